"""Ingest adapters: one module per source (HTTP is in api/ingest.py; MQTT here)."""
