"""Environment sensors: air quality stations, water-level gauges and water-quality probes.

Air pollution follows traffic (NO2, particles), heating in the cold hours,
sunshine (ozone) and rain (washout), each with a slowly wandering local term;
the index is computed on the European air-quality bands. River gauges follow
the rain through the catchment's response, later downstream; storm basins fill
and empty within hours. Water quality in the river worsens with a flood.
"""

from __future__ import annotations

import math
from typing import Any

from citypilot.twin.devices.base import (
    AIR_INTERVAL_S,
    WATER_LEVEL_ALERT_INTERVAL_S,
    WATER_LEVEL_INTERVAL_S,
    WATER_QUALITY_INTERVAL_S,
    DeviceModel,
    SimContext,
)

#: European Air Quality Index band limits (µg/m³) and the matching level names
EAQI_BANDS = {
    "pm25": (10, 20, 25, 50, 75, 800),
    "pm10": (20, 40, 50, 100, 150, 1200),
    "no2": (40, 90, 120, 230, 340, 1000),
    "o3": (50, 100, 130, 240, 380, 800),
}
AQ_LEVELS = ("good", "moderate", "unhealthyForSensitive", "unhealthy", "veryUnhealthy", "hazardous")
RIVER_LAG_S = 2 * 3600.0  # from the most upstream to the most downstream gauge


def air_quality_index(values: dict[str, float]) -> tuple[int, str]:
    """(index 0..500, level) from pollutant concentrations on the EAQI bands."""
    worst = 0.0
    for name, limits in EAQI_BANDS.items():
        v = values[name]
        lo = 0.0
        for band, hi in enumerate(limits):
            if v <= hi or band == len(limits) - 1:
                frac = min(1.0, (v - lo) / (hi - lo)) if hi > lo else 1.0
                worst = max(worst, band + frac)
                break
            lo = hi
    index = min(500, round(worst * 50))
    return index, AQ_LEVELS[min(len(AQ_LEVELS) - 1, int(min(worst, 5.999)))]


class AirQualityModel(DeviceModel):
    """An air-quality station (traffic or urban background)."""

    entity_type = "AirQualityObserved"
    __slots__ = ("exposure", "noise")

    def __init__(self, entity_id: str, x: float, y: float, doc: dict[str, Any]) -> None:
        super().__init__(entity_id, x, y)
        description = doc.get("description", {}).get("value", "")
        self.exposure = 1.0 if "traffic" in description else 0.35
        self.noise = [0.0, 0.0, 0.0]

    def interval(self) -> float:
        """Every five minutes."""
        return AIR_INTERVAL_S

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Concentrations, index, temperature and humidity."""
        env = ctx.env
        nxt = t + ctx.every(AIR_INTERVAL_S)
        if self.fault:
            return None, nxt  # a faulty analyser publishes nothing
        self.noise = [0.9 * n + ctx.rng.gauss(0.0, 0.12) for n in self.noise]
        traffic = env.traffic(t)
        temp = env.temperature(t)
        rain = env.rain(t)
        h = env.local_hour(t)
        heating = (
            max(0.0, 12.0 - temp)
            / 12.0
            * (math.exp(-((h - 8.0) ** 2) / 3.0) + math.exp(-((h - 20.0) ** 2) / 5.0))
        )
        washout = 0.65 if rain > 1.0 else 1.0
        dispersion = math.exp(self.noise[0])
        no2 = (
            (12.0 + 45.0 * self.exposure * traffic + 8.0 * heating)
            * dispersion
            * (0.85 if rain > 1 else 1.0)
        )
        pm10 = (
            (13.0 + 14.0 * self.exposure * traffic + 12.0 * heating)
            * washout
            * math.exp(self.noise[1])
        )
        fire = env.fire_near(self.x, self.y, t, 1500.0)
        if fire is not None:
            pm10 += 120.0 * (1.0 - math.hypot(self.x - fire.x, self.y - fire.y) / 1500.0)
        pm25 = pm10 * (0.62 + 0.08 * math.tanh(self.noise[2]))
        o3 = max(
            2.0,
            (25.0 + 70.0 * env.daylight(t) * max(0.2, temp / 25.0)) * math.exp(self.noise[2])
            - 0.35 * no2,
        )
        values = {"no2": no2, "pm10": pm10, "pm25": pm25, "o3": o3}
        index, level = air_quality_index(values)
        attrs = {k: round(min(v, 2000.0), 1) for k, v in values.items()}
        attrs.update(
            {
                "temperature": round(temp, 1),
                "relativeHumidity": round(env.humidity(t), 1),
                "airQualityIndex": index,
                "airQualityLevel": level,
            }
        )
        return attrs, nxt


class WaterLevelModel(DeviceModel):
    """A river gauge or a storm-basin level sensor."""

    entity_type = "WaterLevelSensor"
    __slots__ = ("alert", "lag", "river")

    def __init__(self, entity_id: str, x: float, y: float, doc: dict[str, Any], lag: float) -> None:
        super().__init__(entity_id, x, y)
        self.river = doc.get("description", {}).get("value", "") == "River gauge"
        self.alert = float(doc["alertLevel"]["value"])
        self.lag = lag

    def interval(self) -> float:
        """Every five minutes; every minute near the alert level."""
        return WATER_LEVEL_INTERVAL_S

    def level(self, t: float, ctx: SimContext) -> float:
        """Water level in metres at ``t``."""
        if self.river:
            return ctx.env.river_level(t, self.lag)
        return ctx.env.basin_level(t)

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """Level, flow, last hour's rain and status."""
        env = ctx.env
        level = self.level(t, ctx) + ctx.rng.gauss(0.0, 0.004)
        flow = 9.0 * max(0.0, level - 0.25) ** 1.7 if self.river else 0.35 * env.rain(t)
        interval = (
            WATER_LEVEL_ALERT_INTERVAL_S if level > 0.8 * self.alert else WATER_LEVEL_INTERVAL_S
        )
        attrs = {
            "waterLevel": round(max(-50.0, min(100.0, level)), 3),
            "flow": round(flow, 2),
            "rainfall": round(min(500.0, env.rain_last_hour(t)), 1),
            "status": self.fault or "ok",
        }
        if self.fault == "offline":
            return None, t + ctx.every(interval)
        return attrs, t + ctx.every(interval)


class WaterQualityModel(DeviceModel):
    """A river probe or a drinking-water network probe."""

    entity_type = "WaterQualityObserved"
    __slots__ = ("lag", "river")

    def __init__(self, entity_id: str, x: float, y: float, doc: dict[str, Any], lag: float) -> None:
        super().__init__(entity_id, x, y)
        self.river = "River" in doc.get("description", {}).get("value", "")
        self.lag = lag

    def interval(self) -> float:
        """Every ten minutes."""
        return WATER_QUALITY_INTERVAL_S

    def report(self, t: float, ctx: SimContext) -> tuple[dict[str, Any] | None, float]:
        """pH, turbidity, conductivity, temperature and dissolved oxygen."""
        env = ctx.env
        rng = ctx.rng
        nxt = t + ctx.every(WATER_QUALITY_INTERVAL_S)
        if self.fault == "offline":
            return None, nxt
        air = env.temperature(t)
        if self.river:
            rise = max(0.0, env.river_level(t, self.lag) - env.season_level(t))
            h = env.local_hour(t)
            water_t = max(0.5, 0.7 * (air + 2.0) + 1.0 * math.sin(2 * math.pi * (h - 10) / 24))
            attrs = {
                "pH": round(
                    7.9
                    + 0.15 * math.sin(2 * math.pi * (h - 9) / 24)
                    - 0.12 * rise
                    + rng.gauss(0, 0.02),
                    2,
                ),
                "turbidity": round(6.0 + 55.0 * rise + abs(rng.gauss(0, 0.8)), 1),
                "conductivity": round(max(0.005, 0.048 - 0.008 * rise + rng.gauss(0, 0.0005)), 4),
                "temperature": round(min(50.0, water_t), 1),
                "dissolvedOxygen": round(
                    max(0.5, 14.6 - 0.38 * water_t - 0.9 * rise + rng.gauss(0, 0.1)), 2
                ),
            }
        else:
            attrs = {
                "pH": round(7.6 + rng.gauss(0, 0.03), 2),
                "turbidity": round(0.15 + abs(rng.gauss(0, 0.04)), 2),
                "conductivity": round(0.052 + rng.gauss(0, 0.0004), 4),
                "temperature": round(11.0 + 0.2 * (air - 11.0) + rng.gauss(0, 0.05), 1),
                "dissolvedOxygen": round(9.2 + rng.gauss(0, 0.1), 2),
            }
        attrs["status"] = self.fault or "ok"
        return attrs, nxt
