"""The simulated world every device reads: clock, sun, traffic, weather, river, incidents.

Every quantity is a deterministic function of the simulated instant (epoch
seconds), the seed and the events added so far, so a device may ask for it at
any time in any order. Background weather (rain episodes, temperature
anomalies) is drawn per local day from a generator seeded by (seed, day).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from citypilot.twin.geo import CENTRE_LAT, CENTRE_LON

TIMEZONE = ZoneInfo("Europe/Paris")
LIGHTS_ON_AFTER_SUNSET_S = 600.0  # photocells switch a little after sunset...
LIGHTS_OFF_BEFORE_SUNRISE_S = 600.0  # ...and off a little before sunrise
RIVER_RESPONSE_S = 3 * 3600.0  # unit hydrograph time constant of the river
RIVER_GAIN = 0.315  # stage (m) per mm/h of rain, times the hydrograph's share reached
BASIN_RESPONSE_S = 0.4 * 3600.0  # storm basins fill fast
BASIN_GAIN = 0.075
HISTORY_DAYS = 4  # how far back rain still matters for the river


@dataclass(frozen=True)
class RainEpisode:
    """Rain of ``intensity`` mm/h from ``start`` to ``end`` (epoch seconds)."""

    start: float
    end: float
    intensity: float


@dataclass(frozen=True)
class Accident:
    """A road accident slowing traffic within ``radius`` metres of (x, y)."""

    x: float
    y: float
    radius: float
    start: float
    end: float
    severity: float  # 0..1: share of speed lost at the centre


@dataclass(frozen=True)
class Fire:
    """A reported fire drawing a crowd and smoke around (x, y)."""

    x: float
    y: float
    start: float
    end: float
    crowd: int


def _cdf_gamma2(tau: float, scale: float) -> float:
    """CDF of the gamma(2) unit hydrograph: share of a rain pulse's effect reached after tau."""
    if tau <= 0.0:
        return 0.0
    r = tau / scale
    return 1.0 - (1.0 + r) * math.exp(-r)


@lru_cache(maxsize=512)
def sun_times(day: date, lat: float = CENTRE_LAT, lon: float = CENTRE_LON) -> tuple[float, float]:
    """Sunrise and sunset (epoch seconds) of a calendar day, by the standard sunrise equation."""
    jd_midnight = day.toordinal() + 1721424.5
    n = math.ceil(jd_midnight - 2451545.0 + 0.0008)
    j_star = n - lon / 360.0
    m = math.radians((357.5291 + 0.98560028 * j_star) % 360.0)
    c = 1.9148 * math.sin(m) + 0.02 * math.sin(2 * m) + 0.0003 * math.sin(3 * m)
    lam = math.radians((math.degrees(m) + c + 180.0 + 102.9372) % 360.0)
    j_transit = 2451545.0 + j_star + 0.0053 * math.sin(m) - 0.0069 * math.sin(2 * lam)
    decl = math.asin(math.sin(lam) * math.sin(math.radians(23.4397)))
    phi = math.radians(lat)
    cos_w = (math.sin(math.radians(-0.833)) - math.sin(phi) * math.sin(decl)) / (
        math.cos(phi) * math.cos(decl)
    )
    w = math.degrees(math.acos(max(-1.0, min(1.0, cos_w))))
    to_epoch = lambda jd: (jd - 2440587.5) * 86400.0  # noqa: E731
    return to_epoch(j_transit - w / 360.0), to_epoch(j_transit + w / 360.0)


def _bump(h: float, centre: float, width: float) -> float:
    return math.exp(-((h - centre) ** 2) / (2 * width * width))


class Environment:
    """Clock, sun, traffic demand, weather, river and incidents of the simulated city."""

    def __init__(self, seed: int, scale: float = 1.0) -> None:
        self.seed = seed
        self.scale = scale
        self.extra_rain: list[RainEpisode] = []
        self.accidents: list[Accident] = []
        self.fires: list[Fire] = []
        self._offsets: dict[int, float] = {}
        self._days: dict[int, tuple[list[RainEpisode], float]] = {}

    # -- clock ---------------------------------------------------------------------------
    def utc_offset(self, t: float) -> float:
        """Seconds to add to UTC for local time at ``t`` (cached per hour)."""
        hour = int(t // 3600)
        off = self._offsets.get(hour)
        if off is None:
            moment = datetime.fromtimestamp(hour * 3600, tz=UTC).astimezone(TIMEZONE)
            off = moment.utcoffset().total_seconds()  # type: ignore[union-attr]
            self._offsets[hour] = off
        return off

    def local_seconds(self, t: float) -> float:
        """Seconds since local midnight."""
        return (t + self.utc_offset(t)) % 86400.0

    def local_hour(self, t: float) -> float:
        """Local time of day in fractional hours."""
        return self.local_seconds(t) / 3600.0

    def local_day(self, t: float) -> int:
        """Local calendar day as days since the Unix epoch."""
        return int((t + self.utc_offset(t)) // 86400)

    def weekday(self, t: float) -> int:
        """Local weekday, Monday = 0."""
        return (self.local_day(t) + 3) % 7

    def is_workday(self, t: float) -> bool:
        """Monday to Friday."""
        return self.weekday(t) < 5

    def local_midnight(self, day: int) -> float:
        """Epoch seconds of local midnight of ``day`` (days since the epoch)."""
        d = date(1970, 1, 1) + timedelta(days=day)
        return datetime(d.year, d.month, d.day, tzinfo=TIMEZONE).timestamp()

    # -- sun -----------------------------------------------------------------------------
    def lights_window(self, t: float) -> tuple[float, float, float]:
        """(this morning's switch-off, this evening's switch-on, tomorrow's switch-off)."""
        d = date(1970, 1, 1) + timedelta(days=self.local_day(t))
        rise, sset = sun_times(d)
        rise_next, _ = sun_times(d + timedelta(days=1))
        return (
            rise - LIGHTS_OFF_BEFORE_SUNRISE_S,
            sset + LIGHTS_ON_AFTER_SUNSET_S,
            rise_next - LIGHTS_OFF_BEFORE_SUNRISE_S,
        )

    def is_dark(self, t: float, jitter: float = 0.0) -> bool:
        """Whether streetlights should be lit at ``t`` (a photocell offset ``jitter`` s)."""
        off_am, on_pm, _ = self.lights_window(t)
        return t < off_am + jitter or t >= on_pm + jitter

    def daylight(self, t: float) -> float:
        """0 at night, rising to 1 at solar noon (a smooth sun-height proxy)."""
        off_am, on_pm, _ = self.lights_window(t)
        if t <= off_am or t >= on_pm:
            return 0.0
        return math.sin(math.pi * (t - off_am) / (on_pm - off_am))

    # -- traffic -------------------------------------------------------------------------
    def traffic(self, t: float) -> float:
        """Road traffic demand relative to the daily mean (about 0.1 at night, 1.6 at peaks)."""
        h = self.local_hour(t)
        if self.is_workday(t):
            return (
                0.10
                + 1.30 * _bump(h, 8.1, 0.9)
                + 0.75 * _bump(h, 12.8, 2.6)
                + 1.40 * _bump(h, 17.6, 1.3)
                + 0.25 * _bump(h, 21.0, 1.5)
            )
        return 0.10 + 0.85 * _bump(h, 14.0, 3.5)

    def slowdown(self, x: float, y: float, t: float) -> float:
        """Share of speed lost at (x, y) to active accidents (0 none .. ~0.9)."""
        worst = 0.0
        for a in self.accidents:
            if a.start <= t < a.end:
                d = math.hypot(x - a.x, y - a.y)
                if d < a.radius:
                    worst = max(worst, a.severity * (1.0 - d / a.radius))
        return worst

    def fire_near(self, x: float, y: float, t: float, radius: float) -> Fire | None:
        """An active fire within ``radius`` metres of (x, y), if any."""
        for f in self.fires:
            if f.start <= t < f.end and math.hypot(x - f.x, y - f.y) < radius:
                return f
        return None

    # -- weather -------------------------------------------------------------------------
    def _day(self, day: int) -> tuple[list[RainEpisode], float]:
        got = self._days.get(day)
        if got is None:
            rng = random.Random(f"{self.seed}:weather:{day}")
            episodes = []
            if rng.random() < 0.35:
                midnight = day * 86400.0 - 3600.0
                for _ in range(rng.randint(1, 3)):
                    start = midnight + rng.uniform(0, 86400)
                    episodes.append(
                        RainEpisode(
                            start, start + rng.uniform(1800, 4 * 3600), rng.uniform(0.4, 4.0)
                        )
                    )
            got = (episodes, rng.gauss(0.0, 2.5))
            self._days[day] = got
            if len(self._days) > 64:
                self._days.pop(min(self._days))
        return got

    def rain_episodes(self, t: float) -> list[RainEpisode]:
        """Rain episodes that can still matter at ``t`` (background and scenario)."""
        day = self.local_day(t)
        out = list(self.extra_rain)
        for d in range(day - HISTORY_DAYS, day + 1):
            out.extend(e for e in self._day(d)[0] if e.start <= t)
        return out

    def rain(self, t: float) -> float:
        """Rain intensity at ``t`` in mm/h."""
        return sum(e.intensity for e in self.rain_episodes(t) if e.start <= t < e.end)

    def rain_last_hour(self, t: float) -> float:
        """Rain that fell in the hour before ``t``, in mm."""
        total = 0.0
        for e in self.rain_episodes(t):
            overlap = min(e.end, t) - max(e.start, t - 3600.0)
            if overlap > 0:
                total += e.intensity * overlap / 3600.0
        return total

    def temperature(self, t: float) -> float:
        """Air temperature in °C: season, time of day and a daily anomaly."""
        day = self.local_day(t)
        doy = (date(1970, 1, 1) + timedelta(days=day)).timetuple().tm_yday
        season = 11.5 - 9.5 * math.cos(2 * math.pi * (doy - 20) / 365.0)
        h = self.local_hour(t)
        frac = h / 24.0
        anomaly = (1 - frac) * self._day(day)[1] + frac * self._day(day + 1)[1]
        amplitude = 5.0 + 1.5 * math.sin(2 * math.pi * (doy - 80) / 365.0)
        cooling = 2.0 if self.rain(t) > 0.5 else 0.0
        return season + amplitude * math.cos(2 * math.pi * (h - 15.0) / 24.0) + anomaly - cooling

    def humidity(self, t: float) -> float:
        """Relative humidity in percent."""
        base = 88.0 - 1.6 * (self.temperature(t) - 5.0)
        if self.rain(t) > 0.2:
            base += 12.0
        return max(25.0, min(100.0, base))

    def season_level(self, t: float) -> float:
        """Base river stage in metres: higher in winter."""
        doy = (date(1970, 1, 1) + timedelta(days=self.local_day(t))).timetuple().tm_yday
        return 0.85 + 0.25 * math.cos(2 * math.pi * (doy - 30) / 365.0)

    def rain_response(self, t: float, time_constant: float, gain: float) -> float:
        """Stage rise at ``t`` from all past rain through a gamma(2) unit hydrograph."""
        rise = 0.0
        for e in self.rain_episodes(t):
            rise += e.intensity * (
                _cdf_gamma2(t - e.start, time_constant) - _cdf_gamma2(t - e.end, time_constant)
            )
        return gain * rise

    def river_level(self, t: float, lag_s: float = 0.0) -> float:
        """River stage in metres at a gauge ``lag_s`` seconds downstream of the reference."""
        return self.season_level(t) + self.rain_response(t - lag_s, RIVER_RESPONSE_S, RIVER_GAIN)

    def basin_level(self, t: float) -> float:
        """Water level of a storm basin in metres (fast response)."""
        return 0.15 + self.rain_response(t, BASIN_RESPONSE_S, BASIN_GAIN)
