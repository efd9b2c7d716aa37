// Key figures at a glance, recomputed from the column store about once a second:
// streetlights on/faulty, trams and buses on time, car-park occupancy, worst air-quality
// station, river level against its alert level, devices silent for too long.

import type { CityData, TypeLayer } from "../data";
import { formatNumber } from "../format";
import { DEVICE_TYPES, LATE_S } from "../silos";
import { h } from "./dom";

/** A device not heard from for this long counts as silent. */
export const SILENT_AFTER_MS = 15 * 60 * 1000;

type Level = "ok" | "warn" | "alert" | "none";

interface Tile {
  el: HTMLElement;
  value: HTMLElement;
  detail: HTMLElement;
  target: string | null;
}

const AQ_RANK = ["good", "moderate", "unhealthyForSensitive", "unhealthy", "veryUnhealthy", "hazardous"];

export class FiguresPanel {
  private tiles = new Map<string, Tile>();
  /** Figures as numbers, for tests and the debug hook. */
  values: Record<string, unknown> = {};
  onSelect: (id: string) => void = () => {};

  constructor(
    el: HTMLElement,
    private data: CityData,
  ) {
    for (const [key, label] of [
      ["lights", "Streetlights"],
      ["trams", "Trams on time"],
      ["buses", "Buses on time"],
      ["parking", "Car-park occupancy"],
      ["air", "Worst air quality"],
      ["river", "River level"],
      ["silent", "Silent devices"],
    ]) {
      const value = h("div", { class: "figure-value" }, "…");
      const detail = h("div", { class: "figure-detail" });
      const tile = h(
        "div",
        { class: "figure", "data-testid": `figure-${key}` },
        h("div", { class: "figure-label" }, label),
        value,
        detail,
      );
      const entry: Tile = { el: tile, value, detail, target: null };
      tile.addEventListener("click", () => entry.target && this.onSelect(entry.target));
      el.append(tile);
      this.tiles.set(key, entry);
    }
  }

  private set(key: string, value: string, detail: string, level: Level, target: string | null = null): void {
    const t = this.tiles.get(key)!;
    t.value.textContent = value;
    t.detail.textContent = detail;
    t.el.dataset.level = level;
    t.target = target;
    t.el.classList.toggle("clickable", !!target);
  }

  update(now = Date.now()): void {
    const L = (t: string) => this.data.layers.get(t);
    this.lights(L("Streetlight"));
    this.transit("trams", L("Tram"));
    this.transit("buses", L("Bus"));
    this.parking(L("ParkingSpot"));
    this.air(L("AirQualityObserved"));
    this.river(L("WaterLevelSensor"));
    this.silent(now);
  }

  private lights(layer?: TypeLayer): void {
    if (!layer) return this.set("lights", "—", "", "none");
    const power = layer.attrs.get("powerState") ?? [];
    const status = layer.attrs.get("status") ?? [];
    let on = 0;
    let faulty = 0;
    for (let i = 0; i < layer.ids.length; i++) {
      if (!layer.ids[i]) continue;
      const p = power[i];
      if (p === "on" || p === "low" || p === "bootingUp") on++;
      const s = status[i];
      if (s && s !== "ok") faulty++;
    }
    this.values.lights = { total: layer.count, on, faulty };
    const share = layer.count ? faulty / layer.count : 0;
    this.set(
      "lights",
      `${formatNumber(on)} on`,
      `${formatNumber(faulty)} faulty of ${formatNumber(layer.count)}`,
      share > 0.05 ? "alert" : faulty ? "warn" : "ok",
    );
  }

  private transit(key: string, layer?: TypeLayer): void {
    if (!layer) return this.set(key, "—", "", "none");
    const status = layer.attrs.get("status") ?? [];
    const delay = layer.attrs.get("delay") ?? [];
    let running = 0;
    let onTime = 0;
    for (let i = 0; i < layer.ids.length; i++) {
      if (!layer.ids[i] || status[i] !== "inService") continue;
      running++;
      const d = delay[i];
      if (typeof d !== "number" || d < LATE_S) onTime++;
    }
    this.values[key] = { running, onTime };
    if (!running) return this.set(key, "—", "none in service", "none");
    const pct = (100 * onTime) / running;
    this.set(
      key,
      `${Math.round(pct)} %`,
      `${onTime} of ${running} in service`,
      pct < 80 ? "alert" : pct < 92 ? "warn" : "ok",
    );
  }

  private parking(layer?: TypeLayer): void {
    if (!layer) return this.set("parking", "—", "", "none");
    const status = layer.attrs.get("status") ?? [];
    let occupied = 0;
    let known = 0;
    for (let i = 0; i < layer.ids.length; i++) {
      if (!layer.ids[i]) continue;
      if (status[i] === "occupied") occupied++;
      if (status[i] === "occupied" || status[i] === "free") known++;
    }
    this.values.parking = { occupied, known };
    if (!known) return this.set("parking", "—", "no sensor data", "none");
    const pct = (100 * occupied) / known;
    this.set(
      "parking",
      `${Math.round(pct)} %`,
      `${formatNumber(occupied)} of ${formatNumber(known)} spots`,
      pct >= 95 ? "alert" : pct >= 85 ? "warn" : "ok",
    );
  }

  private air(layer?: TypeLayer): void {
    if (!layer) return this.set("air", "—", "", "none");
    const aqi = layer.attrs.get("airQualityIndex") ?? [];
    const level = layer.attrs.get("airQualityLevel") ?? [];
    let worst = -1;
    let score = -Infinity;
    for (let i = 0; i < layer.ids.length; i++) {
      if (!layer.ids[i]) continue;
      const a = typeof aqi[i] === "number" ? (aqi[i] as number) : -1;
      const r = AQ_RANK.indexOf(String(level[i]));
      const s = Math.max(a, r * 50);
      if (s > score && (a >= 0 || r >= 0)) {
        score = s;
        worst = i;
      }
    }
    if (worst < 0) return this.set("air", "—", "no readings", "none");
    const a = aqi[worst];
    const lv = level[worst];
    this.values.air = { id: layer.ids[worst], aqi: a, level: lv };
    const rank = AQ_RANK.indexOf(String(lv));
    const bad = typeof a === "number" ? a : rank * 50;
    this.set(
      "air",
      typeof a === "number" ? `AQI ${a}` : String(lv),
      `${layer.name(worst)}${lv ? ` · ${lv}` : ""}`,
      bad > 150 ? "alert" : bad > 100 ? "warn" : "ok",
      layer.ids[worst],
    );
  }

  private river(layer?: TypeLayer): void {
    if (!layer) return this.set("river", "—", "", "none");
    const level = layer.attrs.get("waterLevel") ?? [];
    const alert = layer.attrs.get("alertLevel") ?? [];
    let worst = -1;
    let ratio = -Infinity;
    for (let i = 0; i < layer.ids.length; i++) {
      const l = level[i];
      const a = alert[i];
      if (!layer.ids[i] || typeof l !== "number" || typeof a !== "number" || a === 0) continue;
      if (l / a > ratio) {
        ratio = l / a;
        worst = i;
      }
    }
    if (worst < 0) return this.set("river", "—", "no readings", "none");
    const l = level[worst] as number;
    const a = alert[worst] as number;
    this.values.river = { id: layer.ids[worst], level: l, alert: a };
    this.set(
      "river",
      `${l.toFixed(2)} m`,
      `alert ${a.toFixed(2)} m · ${layer.name(worst)}`,
      l >= a ? "alert" : l >= 0.8 * a ? "warn" : "ok",
      layer.ids[worst],
    );
  }

  private silent(now: number): void {
    let silent = 0;
    let devices = 0;
    const limit = now - SILENT_AFTER_MS;
    for (const layer of this.data.layers.values()) {
      if (!DEVICE_TYPES.has(layer.type)) continue;
      for (let i = 0; i < layer.ids.length; i++) {
        if (!layer.ids[i]) continue;
        devices++;
        if (layer.heard[i] < limit) silent++;
      }
    }
    this.values.silent = { silent, devices };
    this.set(
      "silent",
      formatNumber(silent),
      `of ${formatNumber(devices)} devices, > ${SILENT_AFTER_MS / 60000} min`,
      silent > devices * 0.05 ? "alert" : silent ? "warn" : "ok",
    );
  }
}
