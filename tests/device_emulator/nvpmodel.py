"""Stand-in for a Jetson's ``nvpmodel -q`` (output format of JetPack 4.6)."""

print("NV Power Mode: MAXN")
print("0")
