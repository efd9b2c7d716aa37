"""The engine: what the platform does with what it knows (commands, rules, alarms, modes)."""
