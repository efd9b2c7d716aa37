"""The HTTP API: one router per area, wired by ``create_app``."""
