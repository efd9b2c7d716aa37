"""CityPilot: an open-source city operations platform.

One live model of the city (NGSI-LD entities), its history, ingest from devices,
query and live-stream APIs, on an embedded SQLite store or PostgreSQL + PostGIS.
"""

__version__ = "0.1.0"
