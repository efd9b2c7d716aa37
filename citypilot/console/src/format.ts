// Formatting of values, units and times for operators: short, unambiguous, local time.

/** UN/CEFACT unit codes to the symbols operators read. */
const UNITS: Record<string, string> = {
  WTT: "W",
  KWH: "kWh",
  KMH: "km/h",
  MTR: "m",
  SEC: "s",
  DD: "°",
  GQ: "µg/m³",
  P1: "%",
  CEL: "°C",
  MQS: "m³/s",
  LUX: "lx",
  C62: "",
  MMT: "mm",
  NTU: "NTU",
  D10: "S/m",
  M1: "mg/L",
  KMK: "km²",
};

export function unitSymbol(code: string | null | undefined): string {
  if (!code) return "";
  return UNITS[code] ?? code;
}

export function formatNumber(v: number): string {
  if (Number.isInteger(v)) return v.toLocaleString("en-GB");
  const abs = Math.abs(v);
  return v.toLocaleString("en-GB", { maximumFractionDigits: abs >= 100 ? 0 : abs >= 1 ? 2 : 3 });
}

export function formatValue(v: unknown, unit?: string | null): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") {
    const u = unitSymbol(unit);
    return u ? `${formatNumber(v)} ${u}` : formatNumber(v);
  }
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "string") return v;
  if (typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (typeof o.streetAddress === "string") {
      return [o.streetAddress, o.postalCode, o.addressLocality].filter(Boolean).join(", ");
    }
    if (o.type === "Point" && Array.isArray(o.coordinates)) {
      const [lon, lat] = o.coordinates as number[];
      return `${lat.toFixed(5)}, ${lon.toFixed(5)}`;
    }
    return JSON.stringify(v);
  }
  return String(v);
}

export function formatClock(t: number | Date): string {
  const d = typeof t === "number" ? new Date(t) : t;
  return d.toLocaleTimeString("en-GB", { hour12: false });
}

export function formatDateTime(t: number | Date): string {
  const d = typeof t === "number" ? new Date(t) : t;
  return d.toLocaleString("en-GB", { hour12: false });
}

/** "12 s ago", "4 min ago", "3 h ago", "2 d ago". */
export function ago(t: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** "Streetlight" → "Streetlight", "AirQualityObserved" → "Air quality observed". */
export function humanType(type: string): string {
  const words = type.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** "powerConsumption" → "power consumption". */
export function humanAttr(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase();
}

/** Run a promise for its effect: a failure is logged, never left unhandled. */
export function background(p: Promise<unknown> | undefined, what = "background task"): void {
  p?.catch((e: unknown) => console.warn(`${what} failed:`, e));
}
