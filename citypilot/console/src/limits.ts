// What gives a measured value its meaning: the levels it is judged against (drawn across
// its chart), and the numeric properties that describe an asset rather than measure it
// (shown as facts in the properties table, never as a time series).

import type { Threshold } from "./ui/chart";
import { ALERT, STATE_COLOURS, WARN } from "./silos";

/** Numeric properties that are part of what an asset is, not what it measures. */
export const STATIC_ATTRS = new Set([
  "alertLevel",
  "lanternHeight",
  "totalSlotNumber",
  "floorsAboveGround",
  "maximumParkingDuration",
  "areaServed",
  "population",
]);

/** Legal limits (EU Directive 2008/50/EC and 2024/2881), micrograms per cubic metre. */
const AIR_LIMITS: Record<string, [number, string]> = {
  no2: [200, "EU 1-h limit"],
  pm10: [50, "EU 24-h limit"],
  pm25: [25, "EU 24-h limit (2030)"],
  o3: [180, "information threshold"],
};

/** The levels to draw on the chart of ``attr``; ``value`` reads the asset's own properties. */
export function thresholdsOf(type: string, attr: string, value: (name: string) => unknown): Threshold[] {
  if (type === "WaterLevelSensor" && attr === "waterLevel") {
    const level = value("alertLevel");
    return typeof level === "number" ? [{ value: level, label: "flood alert", colour: STATE_COLOURS[ALERT] }] : [];
  }
  if (type === "AirQualityObserved" && attr in AIR_LIMITS) {
    const [limit, label] = AIR_LIMITS[attr];
    return [{ value: limit, label, colour: STATE_COLOURS[WARN] }];
  }
  return [];
}
