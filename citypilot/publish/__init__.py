"""Outward feeds for the public and for other systems: the static GTFS as a zip,
GTFS-Realtime (vehicle positions, trip updates, alerts) from the fleet's live state,
and road closures with traffic state as JSON. Each module builds one feed; the
routes that serve them are in ``citypilot.api.feeds``."""
