"""GTFS-Realtime feeds (VehiclePositions, TripUpdates, Alerts) built with the
``gtfs-realtime-bindings`` classes from the fleet's live state and the static feed.

Only what joins to the static feed is published: a vehicle's trip must be a trip of
the timetable (its route and stops come from there), and a vehicle silent for more
than :data:`STALE_S` is left out. A trip's predicted times are its scheduled ones
shifted by the vehicle's current delay, from its next stop to the end, so they
increase along the trip as the timetable's do; a stop a detour leaves out is marked
SKIPPED. The service day of a trip is the
local day whose timetable window holds the present moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from google.protobuf import json_format
from google.transit import gtfs_realtime_pb2 as rt

from citypilot.publish.fleet import VehicleState
from citypilot.publish.gtfs_index import StaticIndex, TripTimes

SKIPPED = rt.TripUpdate.StopTimeUpdate.SKIPPED
STALE_S = 600.0
WINDOW_S = 3 * 3600  # a trip's service day: its timetable window widened by this much
_VP = rt.VehiclePosition
#: (below this occupancy in percent, status)
OCCUPANCY_STATUS = (
    (5.0, _VP.EMPTY),
    (40.0, _VP.MANY_SEATS_AVAILABLE),
    (75.0, _VP.FEW_SEATS_AVAILABLE),
    (110.0, _VP.STANDING_ROOM_ONLY),
    (150.0, _VP.CRUSHED_STANDING_ROOM_ONLY),
)


@dataclass(frozen=True)
class ServiceAlert:
    """A service alert: what is affected (routes, stops, trips), why, and for how long."""

    alert_id: str
    effect: str  # a GTFS-RT Alert.Effect name, e.g. "DETOUR"
    cause: str  # an Alert.Cause name, e.g. "CONSTRUCTION", "ACCIDENT"
    header: str
    description: str
    route_ids: tuple[str, ...] = ()
    stop_ids: tuple[str, ...] = ()
    trip_ids: tuple[str, ...] = ()
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Placed:
    """A vehicle matched to a trip of the timetable on a service day."""

    vehicle: VehicleState
    trip: TripTimes
    day_start: float  # epoch seconds of the service day's midnight
    start_date: str  # YYYYMMDD
    next_index: int | None  # index in trip.stop_ids of the next stop


class FeedBuilder:
    """Builds the three feeds against one static index, in the feed's time zone."""

    def __init__(self, index: StaticIndex) -> None:
        self.index = index
        self.tz = ZoneInfo(index.timezone)

    # -- matching ----------------------------------------------------------------------
    def place(self, fleet: Iterable[VehicleState], now: float) -> list[Placed]:
        """The vehicles in service on a timetabled trip, heard from recently."""
        placed = []
        today = datetime.fromtimestamp(now, self.tz).date()
        midnights = []
        for day in (today, today - timedelta(days=1)):
            midnight = datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp()
            midnights.append((midnight, day.strftime("%Y%m%d")))
        for v in fleet:
            if v.trip_id is None or now - v.observed_at > STALE_S:
                continue
            trip = self.index.trips.get(v.trip_id)
            if trip is None or not trip.arrivals:
                continue
            late = max(0.0, v.delay)
            for midnight, stamp in midnights:
                if (
                    midnight + trip.departures[0] - WINDOW_S
                    <= now
                    <= midnight + trip.arrivals[-1] + late + WINDOW_S
                ):
                    nxt = trip.position_of(v.next_stop) if v.next_stop else None
                    placed.append(Placed(v, trip, midnight, stamp, nxt))
                    break
        return placed

    def _header(self, message: rt.FeedMessage, now: float) -> None:
        message.header.gtfs_realtime_version = "2.0"
        message.header.incrementality = rt.FeedHeader.FULL_DATASET
        message.header.timestamp = int(now)

    @staticmethod
    def _describe(p: Placed, trip: rt.TripDescriptor, vehicle: rt.VehicleDescriptor) -> None:
        trip.trip_id = p.trip.trip_id
        trip.route_id = p.trip.route_id
        trip.direction_id = p.trip.direction_id
        trip.start_date = p.start_date
        dep = p.trip.departures[0]
        trip.start_time = f"{dep // 3600:02d}:{dep // 60 % 60:02d}:{dep % 60:02d}"
        trip.schedule_relationship = rt.TripDescriptor.SCHEDULED
        vehicle.id = p.vehicle.vehicle_id
        vehicle.label = p.vehicle.label

    # -- feeds -------------------------------------------------------------------------
    def vehicle_positions(self, placed: Sequence[Placed], now: float) -> rt.FeedMessage:
        """Where each vehicle in service is, on which trip, heading for which stop."""
        message = rt.FeedMessage()
        self._header(message, now)
        for p in placed:
            v = p.vehicle
            entity = message.entity.add()
            entity.id = v.vehicle_id
            vp = entity.vehicle
            self._describe(p, vp.trip, vp.vehicle)
            vp.position.latitude = v.lat
            vp.position.longitude = v.lon
            if v.bearing is not None:
                vp.position.bearing = v.bearing
            if v.speed_kmh is not None:
                vp.position.speed = v.speed_kmh / 3.6
            vp.timestamp = int(v.observed_at)
            if p.next_index is not None:
                vp.stop_id = p.trip.stop_ids[p.next_index]
                vp.current_stop_sequence = p.trip.sequences[p.next_index]
                waiting = p.next_index == 0 and not v.speed_kmh
                vp.current_status = _VP.STOPPED_AT if waiting else _VP.IN_TRANSIT_TO
            if v.occupancy is not None:
                vp.occupancy_percentage = round(v.occupancy)
                vp.occupancy_status = next(
                    (s for limit, s in OCCUPANCY_STATUS if v.occupancy < limit), _VP.FULL
                )
        return message

    def trip_updates(
        self,
        placed: Sequence[Placed],
        now: float,
        skipped: Mapping[tuple[str, int], frozenset[str]] | None = None,
    ) -> rt.FeedMessage:
        """Predicted arrival and departure at each stop still ahead of each vehicle; the
        stops its line does not serve now (``skipped``, by route and direction) SKIPPED."""
        skipped = skipped or {}
        message = rt.FeedMessage()
        self._header(message, now)
        for p in placed:
            if p.next_index is None:
                continue
            v, trip = p.vehicle, p.trip
            delay = round(v.delay)
            entity = message.entity.add()
            entity.id = f"{trip.trip_id}@{p.start_date}"
            tu = entity.trip_update
            self._describe(p, tu.trip, tu.vehicle)
            tu.timestamp = int(v.observed_at)
            tu.delay = delay
            base = int(p.day_start) + delay
            passed_by = skipped.get((trip.route_id, trip.direction_id), frozenset())
            add = tu.stop_time_update.add
            sequences, stop_ids = trip.sequences, trip.stop_ids
            arrivals, departures = trip.arrivals, trip.departures
            for k in range(p.next_index, len(stop_ids)):
                stop_id = stop_ids[k]
                if stop_id in passed_by:
                    add(stop_sequence=sequences[k], stop_id=stop_id, schedule_relationship=SKIPPED)
                    continue
                stu = add(stop_sequence=sequences[k], stop_id=stop_id)
                event = stu.arrival
                event.time = base + arrivals[k]
                event.delay = delay
                event = stu.departure
                event.time = base + departures[k]
                event.delay = delay
        return message

    def alerts(self, items: Iterable[ServiceAlert], now: float) -> rt.FeedMessage:
        """The service alerts in force (detours, closures) with what they affect."""
        message = rt.FeedMessage()
        self._header(message, now)
        for a in items:
            entity = message.entity.add()
            entity.id = a.alert_id
            alert = entity.alert
            if a.start is not None or a.end is not None:
                period = alert.active_period.add()
                if a.start is not None:
                    period.start = int(a.start)
                if a.end is not None:
                    period.end = int(a.end)
            for route_id in a.route_ids:
                informed = alert.informed_entity.add()
                informed.route_id = route_id
                informed.route_type = self.index.route_type.get(route_id, 3)
            for stop_id in a.stop_ids:
                alert.informed_entity.add().stop_id = stop_id
            for trip_id in a.trip_ids:
                alert.informed_entity.add().trip.trip_id = trip_id
            alert.cause = rt.Alert.Cause.Value(a.cause)
            alert.effect = rt.Alert.Effect.Value(a.effect)
            _text(alert.header_text, a.header)
            _text(alert.description_text, a.description)
        return message


def _text(target: rt.TranslatedString, text: str) -> None:
    translation = target.translation.add()
    translation.text = text
    translation.language = "fr"


def as_json(message: rt.FeedMessage) -> dict:
    """The feed as the usual JSON debug view (field names as in the .proto)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)
