"""Profile: measured latency, memory and energy of compiled candidates."""
