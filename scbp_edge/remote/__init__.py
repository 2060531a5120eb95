"""Remote devices, agentless: the system OpenSSH client and nothing on the device but its stock OS."""
