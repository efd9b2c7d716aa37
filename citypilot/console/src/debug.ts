// A small read-only hook for tests and benchmarks: window.__citypilot.
// It exposes what the console shows (counts, positions, when changes reached the screen),
// never a way to change anything. Documented in docs/console.md.

import type { ConsoleApp } from "./app";
import { SILOS } from "./silos";

export interface DebugHook {
  version: number;
  readonly ready: boolean;
  /** Login pressed → first complete map render, in ms (null before it happens). */
  readonly firstRenderMs: number | null;
  readonly timings: Record<string, number | undefined>;
  /** Assets per type in the console's data. */
  layerCounts(): Record<string, number>;
  /** Assets per silo (what the layers panel shows). */
  siloCounts(): Record<string, number>;
  /** Assets of a type the map draws now (clusters count their members). */
  renderedCount(type: string): number;
  /** [lon, lat] of an asset in the console's data. */
  vehiclePosition(id: string): [number, number] | null;
  /** [lon, lat] where the map draws an asset now (null: not drawn). */
  renderedPosition(id: string): [number, number] | null;
  /** Page coordinates of an asset on the map, e.g. to click it. */
  screenPoint(id: string): { x: number; y: number } | null;
  /** id → when its latest change was on screen (epoch ms). A copy. */
  readonly lastApplied: Record<string, number>;
  /** The same for some ids (null: none applied yet). Cheaper than lastApplied. */
  appliedAt(ids: string[]): (number | null)[];
  /** What reached the screen since sequence number ``seq`` (a bounded log, for benchmarks). */
  appliedSince(seq: number): { next: number; ids: string[]; times: number[] };
  connection(): { state: string; reconnects: number };
  /** The map's zoom, whether it is moving, and whether every tile in view is loaded (the
   * moving vehicles' source aside: under live load it reloads several times a second). */
  mapView(): {
    zoom: number;
    center: [number, number];
    moving: boolean;
    tilesLoaded: boolean;
    /** The ratio of canvas pixels to CSS pixels the map draws at. */
    pixelRatio: number;
  };
  /** The distinct texts a label layer (e.g. "labels:roads") draws now, sorted. */
  renderedLabels(layer: string): string[];
  figures(): Record<string, unknown>;
  selected(): string | null;
  /** The incident board: ids listed, the incident open in the dock, what the map draws. */
  incidents(): {
    board: string[];
    open: string | null;
    drawn: { incidents: number; closures: number; routes: number };
  };
  /** Stream frames and changes applied, map frames drawn, JS heap (when the browser says). */
  stats(): { frames: number; changes: number; renders: number; heapBytes: number | null };
}

declare global {
  interface Window {
    __citypilot?: DebugHook;
  }
}

export function installDebugHook(app: ConsoleApp): void {
  const locate = (id: string) => app.data.locate(id);
  const hook: DebugHook = {
    version: 1,
    get ready() {
      return app.ready;
    },
    get firstRenderMs() {
      const t = app.timings;
      return t.firstIdleAt !== undefined && t.loginStartedAt !== undefined ? t.firstIdleAt - t.loginStartedAt : null;
    },
    get timings() {
      return { ...app.timings };
    },
    layerCounts() {
      const out: Record<string, number> = {};
      for (const [t, layer] of app.data.layers) out[t] = layer.count;
      return out;
    },
    siloCounts() {
      const out: Record<string, number> = {};
      for (const s of SILOS) out[s.id] = s.types.reduce((n, t) => n + (app.data.layers.get(t)?.count ?? 0), 0);
      return out;
    },
    renderedCount: (type) => app.assets.renderedCount(type),
    vehiclePosition(id) {
      const loc = locate(id);
      return loc ? [loc.layer.lon[loc.index], loc.layer.lat[loc.index]] : null;
    },
    renderedPosition(id) {
      const loc = locate(id);
      return loc ? app.assets.renderedPosition(loc.layer.type, loc.index) : null;
    },
    screenPoint(id) {
      const loc = locate(id);
      if (!loc) return null;
      const p = app.map.project([loc.layer.lon[loc.index], loc.layer.lat[loc.index]]);
      const r = app.map.getContainer().getBoundingClientRect();
      return { x: r.left + p.x, y: r.top + p.y };
    },
    get lastApplied() {
      return Object.fromEntries(app.assets.lastApplied);
    },
    appliedAt: (ids) => ids.map((id) => app.assets.lastApplied.get(id) ?? null),
    appliedSince: (seq) => app.assets.log.since(seq),
    mapView: () => ({
      zoom: app.map.getZoom(),
      center: app.map.getCenter().toArray() as [number, number],
      moving: app.map.isMoving(),
      tilesLoaded: [...app.baseSources, ...app.assets.staticSources()].every((id) => app.map.isSourceLoaded(id)),
      pixelRatio: app.map.getPixelRatio(),
    }),
    renderedLabels(layer) {
      if (!app.map.getLayer(layer)) return [];
      const names = app.map.queryRenderedFeatures({ layers: [layer] }).map((f) => String(f.properties.name));
      return [...new Set(names)].sort();
    },
    connection: () => ({ state: app.stream.state, reconnects: app.stream.reconnects }),
    figures: () => ({ ...app.figures.values }),
    selected: () => app.assetPanel.current,
    incidents: () => ({
      board: app.incidentBoard.shown.map((i) => i.id),
      open: app.incidentPanel.current,
      drawn: app.incidentLayers?.counts() ?? { incidents: 0, closures: 0, routes: 0 },
    }),
    stats() {
      const mem = (performance as Performance & { memory?: { usedJSHeapSize: number } }).memory;
      return {
        frames: app.framesApplied,
        changes: app.changesApplied,
        renders: app.assets.renders,
        heapBytes: mem ? mem.usedJSHeapSize : null,
      };
    },
  };
  Object.defineProperty(window, "__citypilot", { value: hook, configurable: true });
}
