// The silos the console shows as map layers, and how each asset's state is read.
//
// Every asset gets a small numeric state code that drives its colour and symbol on the
// map, the event feed and the key figures. Codes are the same for every type so the map
// needs one paint expression: OK, WARN, ALERT, INACTIVE, BUSY.

export const OK = 0;
export const WARN = 1;
export const ALERT = 2;
export const INACTIVE = 3;
export const BUSY = 4;
export type StateCode = 0 | 1 | 2 | 3 | 4;

export const STATE_NAMES = ["normal", "warning", "alert", "inactive", "occupied / engaged"];
export const STATE_COLOURS = {
  [WARN]: "#ffb020",
  [ALERT]: "#ff3d3d",
  [INACTIVE]: "#5d6675",
  [BUSY]: "#a58bff",
};

export interface Silo {
  id: string;
  label: string;
  types: string[];
  /** Colour of a normal asset of this silo. */
  colour: string;
  /** Whether the layer is on when the console opens. */
  visible: boolean;
}

export const SILOS: Silo[] = [
  { id: "lighting", label: "Lighting", types: ["Streetlight"], colour: "#ffe08a", visible: true },
  { id: "signals", label: "Signals", types: ["TrafficSignal"], colour: "#3ddc97", visible: true },
  { id: "cameras", label: "Cameras", types: ["Camera"], colour: "#7fd1ff", visible: true },
  { id: "trams", label: "Trams", types: ["Tram"], colour: "#ff7ad9", visible: true },
  { id: "buses", label: "Buses", types: ["Bus"], colour: "#4dd0e1", visible: true },
  { id: "bikes", label: "Bikes", types: ["BikeStation"], colour: "#b4e05a", visible: true },
  {
    id: "parking",
    label: "Parking & delivery",
    types: ["ParkingSpot", "DeliveryArea", "OffStreetParking"],
    colour: "#2ec4a6",
    visible: true,
  },
  { id: "air", label: "Air", types: ["AirQualityObserved"], colour: "#c0ca33", visible: true },
  {
    id: "water",
    label: "Water",
    types: ["WaterLevelSensor", "WaterQualityObserved"],
    colour: "#42a5f5",
    visible: true,
  },
  {
    id: "buildings",
    label: "Buildings & access",
    types: ["Building", "AccessPoint"],
    colour: "#ffab76",
    visible: true,
  },
  { id: "police", label: "Police", types: ["PoliceUnit"], colour: "#5c7cff", visible: true },
  {
    id: "technical",
    label: "Technical units",
    types: ["TechnicalVehicle"],
    colour: "#ff9f43",
    visible: true,
  },
];

/** Types whose position changes all day: drawn on top and bigger. */
export const VEHICLE_TYPES = new Set(["Tram", "Bus", "PoliceUnit", "TechnicalVehicle"]);

/** Types that report by themselves, so silence means trouble (key figure "silent"). */
export const DEVICE_TYPES = new Set([
  "Streetlight",
  "TrafficSignal",
  "Camera",
  "Tram",
  "Bus",
  "BikeStation",
  "ParkingSpot",
  "DeliveryArea",
  "OffStreetParking",
  "AirQualityObserved",
  "WaterLevelSensor",
  "WaterQualityObserved",
  "AccessPoint",
  "PoliceUnit",
  "TechnicalVehicle",
]);

export const ASSET_TYPES = SILOS.flatMap((s) => s.types);

/** Attributes the console needs of every asset up front (state, figures, search); others
 * are read when an asset is opened, and any attribute the stream brings is kept. */
export const MAP_ATTRS: Record<string, string[]> = {
  Streetlight: ["name", "status", "powerState"],
  TrafficSignal: ["name", "status", "controlMode", "phase"],
  Camera: ["name", "status"],
  Tram: ["name", "status", "delay"],
  Bus: ["name", "status", "delay"],
  BikeStation: ["name", "status"],
  ParkingSpot: ["name", "status"],
  DeliveryArea: ["name", "status", "overstay"],
  OffStreetParking: ["name", "status", "category", "availableSpotNumber"],
  AirQualityObserved: ["name", "airQualityLevel", "airQualityIndex"],
  WaterLevelSensor: ["name", "status", "waterLevel", "alertLevel"],
  WaterQualityObserved: ["name", "status"],
  Building: ["name", "status"],
  AccessPoint: ["name", "status"],
  PoliceUnit: ["name", "status"],
  TechnicalVehicle: ["name", "status"],
  Municipality: ["name"],
};
const SILO_OF_TYPE = new Map(SILOS.flatMap((s) => s.types.map((t) => [t, s] as const)));

export function siloOf(type: string): Silo | undefined {
  return SILO_OF_TYPE.get(type);
}

/** Read one attribute of one asset. */
export type Getter = (attr: string) => unknown;

/** Seconds late from which a tram or bus counts as late (warning) and very late (alert). */
export const LATE_S = 180;
export const VERY_LATE_S = 300;

const CLASSIFIERS: Record<string, (get: Getter) => StateCode> = {
  Streetlight: (get) => {
    const status = get("status");
    if (status && status !== "ok") return ALERT;
    return get("powerState") === "off" ? INACTIVE : OK;
  },
  TrafficSignal: (get) => {
    const status = get("status");
    if (status && status !== "ok") return ALERT;
    const mode = get("controlMode");
    if (mode === "off" || get("phase") === "off") return INACTIVE;
    return mode === "manual" || get("phase") === "flashingAmber" ? WARN : OK;
  },
  Camera: (get) => {
    const status = get("status");
    return status === "fault" ? ALERT : status === "offline" ? WARN : OK;
  },
  Tram: transit,
  Bus: transit,
  BikeStation: (get) => {
    const status = get("status");
    if (status === "outOfService" || status === "withIncidence") return ALERT;
    return status === "empty" || status === "full" ? WARN : OK;
  },
  ParkingSpot: (get) => {
    const status = get("status");
    if (status === "occupied") return BUSY;
    return status === "closed" || status === "unknown" ? INACTIVE : OK;
  },
  DeliveryArea: (get) => {
    if (get("overstay") === true) return ALERT;
    const status = get("status");
    if (status === "occupied") return BUSY;
    return status === "closed" || status === "unknown" ? INACTIVE : OK;
  },
  OffStreetParking: (get) => {
    const status = get("status");
    if (status === "outOfService") return ALERT;
    if (status === "closed") return INACTIVE;
    return get("availableSpotNumber") === 0 ? BUSY : OK;
  },
  AirQualityObserved: (get) => {
    const level = get("airQualityLevel");
    if (typeof level === "string") {
      if (level === "good" || level === "moderate") return OK;
      return level === "unhealthyForSensitive" ? WARN : ALERT;
    }
    const aqi = get("airQualityIndex");
    if (typeof aqi === "number") return aqi > 150 ? ALERT : aqi > 100 ? WARN : OK;
    return OK;
  },
  WaterLevelSensor: (get) => {
    const status = get("status");
    if (status === "fault" || status === "offline") return INACTIVE;
    const level = get("waterLevel");
    const alert = get("alertLevel");
    if (typeof level === "number" && typeof alert === "number") {
      if (level >= alert) return ALERT;
      if (level >= alert * 0.8) return WARN;
    }
    return OK;
  },
  WaterQualityObserved: (get) => {
    const status = get("status");
    return status === "fault" ? ALERT : status === "offline" ? INACTIVE : OK;
  },
  Building: (get) => {
    const status = get("status");
    if (status === "lockdown" || status === "evacuated") return ALERT;
    return status === "closed" ? INACTIVE : OK;
  },
  AccessPoint: (get) => {
    const status = get("status");
    return status === "fault" ? ALERT : status === "offline" ? WARN : OK;
  },
  PoliceUnit: (get) => {
    const status = get("status");
    if (status === "dispatched" || status === "onScene") return BUSY;
    return status === "offDuty" ? INACTIVE : OK;
  },
  TechnicalVehicle: (get) => {
    const status = get("status");
    if (status === "outOfService") return INACTIVE;
    return status === "working" || status === "onRoute" ? BUSY : OK;
  },
};

function transit(get: Getter): StateCode {
  const status = get("status");
  if (status === "breakdown") return ALERT;
  if (status === "outOfService" || status === "atDepot") return INACTIVE;
  const delay = get("delay");
  if (typeof delay === "number") {
    if (delay >= VERY_LATE_S) return ALERT;
    if (delay >= LATE_S) return WARN;
  }
  return OK;
}

/** The state code of an asset of this type. */
export function classify(type: string, get: Getter): StateCode {
  const f = CLASSIFIERS[type];
  return f ? f(get) : OK;
}

/** Why an asset is in its state, in a few words (for the feed and the panel). */
export function describeState(type: string, get: Getter, code: StateCode): string {
  switch (type) {
    case "Tram":
    case "Bus": {
      const delay = get("delay");
      if (code === ALERT && get("status") !== "breakdown" && typeof delay === "number")
        return `late ${Math.round(delay / 60)} min`;
      if (code === WARN && typeof delay === "number") return `late ${Math.round(delay / 60)} min`;
      return String(get("status") ?? STATE_NAMES[code]);
    }
    case "WaterLevelSensor": {
      const level = get("waterLevel");
      const alert = get("alertLevel");
      if (typeof level === "number" && typeof alert === "number" && code !== INACTIVE)
        return `level ${level.toFixed(2)} m / alert ${alert.toFixed(2)} m`;
      return String(get("status") ?? STATE_NAMES[code]);
    }
    case "AirQualityObserved":
      return String(get("airQualityLevel") ?? `AQI ${get("airQualityIndex") ?? "?"}`);
    case "Streetlight":
      return code === ALERT ? String(get("status")) : String(get("powerState") ?? "");
    case "DeliveryArea":
      return code === ALERT ? "overstay" : String(get("status") ?? "");
    default:
      return String(get("status") ?? STATE_NAMES[code]);
  }
}

/** Weight of an asset in its cluster's "load" (share of faulty lights, occupied spots). */
export function clusterWeight(type: string, code: StateCode): number {
  if (type === "ParkingSpot" || type === "DeliveryArea") return code === BUSY || code === ALERT ? 1 : 0;
  return code === ALERT ? 1 : 0;
}

/** Share of the cluster's load at which it turns fully red (e.g. 10 % faulty lights). */
export function clusterLoadAlert(type: string): number {
  return type === "ParkingSpot" || type === "DeliveryArea" ? 0.95 : 0.1;
}
