"""Stores: current state, history, dead letters and accounts, behind small interfaces.

``open_store(settings)`` returns the configured backend: the embedded SQLite store
(default) or PostgreSQL + PostGIS. Both pass the same contract tests.
"""

from citypilot.store.base import EntityQuery, EntityRef, GeoQuery, HistoryQuery, Store
from citypilot.store.factory import open_store

__all__ = ["EntityQuery", "EntityRef", "GeoQuery", "HistoryQuery", "Store", "open_store"]
