"""People, roles, device keys and tokens."""
