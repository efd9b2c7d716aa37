// Asset layers on the map: circles coloured and sized by state code.
//
// How it stays fast with 45,000–250,000 assets:
// * features carry only an integer id (the asset's slot in its column store, plus an
//   offset per type in a shared source) and its state code, so the worker indexes little
//   and the main thread copies little;
// * state changes are applied with setFeatureState: no re-indexing, only the paint
//   buffers of the changed features are rewritten;
// * types with many assets are clustered at low zoom (supercluster, in the worker);
//   cluster colour shows the share of faulty lights / occupied spots, refreshed every few
//   seconds, and an overlay keeps every asset in alert visible at every zoom;
// * all moving vehicles share one small source, sent to the worker as a diff
//   (GeoJSONSource.updateData) once per stream frame, and the frame's state changes are
//   drawn together with it: one map repaint per frame, which matters where WebGL is
//   software-rendered (a headless browser, a thin client).

import type {
  DataDrivenPropertyValueSpecification,
  ExpressionSpecification,
  GeoJSONSource,
  Map as MapLibreMap,
  MapGeoJSONFeature,
} from "maplibre-gl";
import type { Applied, TypeLayer } from "../data";
import {
  ALERT,
  BUSY,
  clusterLoadAlert,
  clusterWeight,
  INACTIVE,
  SILOS,
  STATE_COLOURS,
  VEHICLE_TYPES,
  WARN,
} from "../silos";
import { background } from "../format";
import { BACKGROUND } from "./style";

/** The layer below which static assets are drawn, and above which labels go. */
export const LABELS_ANCHOR = "z:labels";

/** Types with at least this many assets are clustered at low zoom. */
export const CLUSTER_MIN = 2000;
/** Zoom from which clustered types are drawn one circle per asset. */
export const CLUSTER_MAX_ZOOM = 14;
/** How often cluster colours catch up with state changes. */
const CLUSTER_REFRESH_MS = 2000;
/** Longest a state change waits to be drawn together with moving vehicles. */
const MAX_STATE_DEFER_MS = 200;
/** How often the alert overlay is redrawn at most. */
const ALERTS_REFRESH_MS = 250;
/** Feature ids of the shared vehicle source: type number × ID_STRIDE + slot. */
const ID_STRIDE = 1 << 22;
const VEHICLE_SOURCE = "a:vehicles";

type Feature = GeoJSON.Feature<GeoJSON.Point, { s: number; w: number }>;
type DiffUpdate = {
  id: number;
  newGeometry?: GeoJSON.Point;
  addOrUpdateProperties?: { key: string; value: number }[];
};

/** One GeoJSON source and the diffs waiting for it. */
interface SourceInfo {
  id: string;
  clustered: boolean;
  views: TypeView[];
  add: Map<number, Feature>;
  move: Map<number, GeoJSON.Point>;
  remove: Set<number>;
  props: Map<number, { s: number; w: number }>;
  /** Diffs sent to the worker, and the last one it has applied. */
  sentGen: number;
  doneGen: number;
}

/** One asset type on the map. */
interface TypeView {
  type: string;
  silo: string;
  src: SourceInfo;
  /** Offset of this type's feature ids in its source. */
  base: number;
  points: string;
  clusters: string | null;
  vehicle: boolean;
  visible: boolean;
}

/** A bounded log of (id, time on screen), read incrementally by sequence number. */
export class AppliedLog {
  private ids: string[] = [];
  private times: number[] = [];
  private first = 0;

  constructor(private capacity: number) {}

  push(id: string, t: number): void {
    this.ids.push(id);
    this.times.push(t);
    if (this.ids.length > this.capacity) {
      const drop = this.ids.length - this.capacity / 2;
      this.ids.splice(0, drop);
      this.times.splice(0, drop);
      this.first += drop;
    }
  }

  /** Entries from sequence number ``seq`` on, and the sequence number to ask next. */
  since(seq: number): { next: number; ids: string[]; times: number[] } {
    const from = Math.max(0, seq - this.first);
    return { next: this.first + this.ids.length, ids: this.ids.slice(from), times: this.times.slice(from) };
  }
}

const CODE: ExpressionSpecification = ["coalesce", ["feature-state", "s"], ["get", "s"]];

function siloColour(silo: string): string {
  return SILOS.find((s) => s.id === silo)?.colour ?? "#cccccc";
}

function colourExpr(silo: string): DataDrivenPropertyValueSpecification<string> {
  return [
    "match",
    CODE,
    WARN,
    STATE_COLOURS[WARN],
    ALERT,
    STATE_COLOURS[ALERT],
    INACTIVE,
    STATE_COLOURS[INACTIVE],
    BUSY,
    STATE_COLOURS[BUSY],
    siloColour(silo),
  ];
}

function radiusExpr(small: number, big: number): DataDrivenPropertyValueSpecification<number> {
  const k: ExpressionSpecification = ["match", CODE, ALERT, 1.7, WARN, 1.3, INACTIVE, 0.8, 1];
  return ["interpolate", ["linear"], ["zoom"], 10, ["*", small, k], 17, ["*", big, k]];
}

function feature(id: number, lon: number, lat: number, s: number, w: number): Feature {
  return { type: "Feature", id, geometry: { type: "Point", coordinates: [lon, lat] }, properties: { s, w } };
}

/** A GeoJSON FeatureCollection of these features. */
export function featureCollection<T extends GeoJSON.Feature>(features: T[]): GeoJSON.FeatureCollection {
  return { type: "FeatureCollection", features };
}

export class AssetLayers {
  private views = new Map<string, TypeView>();
  private sources = new Map<string, SourceInfo>();
  private alerts = new Map<string, GeoJSON.Feature>();
  private alertsDirty = false;
  private alertsAt = 0;
  private propsAt = 0;
  private visibleSilos = new Set<string>();
  private stampQueue: { ids: string[]; src: SourceInfo | null; gen: number }[] = [];
  /** Feature states (source, id, code) waiting for the diffs sent with them. */
  private states: [string, number, number][] = [];
  private stateIds: string[] = [];
  private waitFor = new Map<SourceInfo, number>();
  private deferTimer: number | undefined;
  private selected: { type: string; index: number } | null = null;
  /** When each asset's latest change reached the screen (epoch ms). */
  readonly lastApplied = new Map<string, number>();
  /** The same, as a bounded log in the order changes reached the screen (benchmarks). */
  readonly log = new AppliedLog(100_000);
  /** Frames the map has drawn. */
  renders = 0;

  constructor(
    private map: MapLibreMap,
    private layerOf: (type: string) => TypeLayer | undefined,
  ) {
    // Empty anchors keep the drawing order whatever order the types arrive in: static
    // assets, then labels (see labels.ts), alerts, vehicles and the selection ring.
    for (const id of [LABELS_ANCHOR, "z:alerts", "z:vehicles", "z:top"]) {
      map.addLayer({ id, type: "background", layout: { visibility: "none" }, paint: {} });
    }
    map.addSource("alerts", { type: "geojson", data: featureCollection([]) });
    map.addLayer(
      {
        id: "alerts:points",
        type: "circle",
        source: "alerts",
        paint: {
          "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 3.5, 17, 9],
          "circle-color": STATE_COLOURS[ALERT],
          "circle-stroke-color": "#ffffff",
          "circle-stroke-width": 1.2,
        },
      },
      "z:vehicles",
    );
    map.addSource("selection", { type: "geojson", data: featureCollection([]) });
    map.addLayer({
      id: "selection:ring",
      type: "circle",
      source: "selection",
      paint: {
        "circle-radius": 13,
        "circle-color": "rgba(0,0,0,0)",
        "circle-stroke-color": "#ffffff",
        "circle-stroke-width": 2.5,
      },
    });
    map.on("render", () => {
      this.renders++;
      this.stampRendered();
    });
    map.on("sourcedata", (e) => {
      if (!e.isSourceLoaded || !this.sources.has(e.sourceId)) return;
      // Reloaded tiles of a diff are not always followed by a frame: ask for one.
      if (this.waitFor.size && this.diffsLoaded()) this.applyStates();
      else map.triggerRepaint();
    });
  }

  /** Ids of the sources of assets that stay in place (all but the moving vehicles). */
  staticSources(): string[] {
    return [...this.sources.keys()].filter((id) => id !== VEHICLE_SOURCE);
  }

  /** Layer ids a click may hit, topmost first. */
  clickableLayers(): string[] {
    const out = ["alerts:points"];
    const views = [...this.views.values()].sort((a, b) => Number(b.vehicle) - Number(a.vehicle));
    for (const v of views) {
      out.push(v.points);
      if (v.clusters) out.push(v.clusters);
    }
    return out.filter((id) => this.map.getLayer(id));
  }

  /** Show a type's snapshot: create its source and layers, or replace their data. */
  setType(layer: TypeLayer, silo: string, visible: boolean): void {
    const known = this.views.get(layer.type);
    const view = known ?? this.createType(layer, silo, visible);
    const src = view.src;
    src.add.clear();
    src.move.clear();
    src.remove.clear();
    src.props.clear();
    if (known) this.map.removeFeatureState({ source: src.id });
    // A shared source is rebuilt from every type in it.
    const features = src.views.flatMap((v) => this.features(v));
    background((this.map.getSource(src.id) as GeoJSONSource).setData(featureCollection(features)), "setData");
    if (src.clustered) this.rebuildAlerts(view);
  }

  private createType(layer: TypeLayer, silo: string, visible: boolean): TypeView {
    const type = layer.type;
    const vehicle = VEHICLE_TYPES.has(type);
    const clustered = !vehicle && layer.count >= CLUSTER_MIN;
    const srcId = vehicle ? VEHICLE_SOURCE : `a:${type}`;
    let src = this.sources.get(srcId);
    if (!src) {
      src = {
        id: srcId,
        clustered,
        views: [],
        add: new Map(),
        move: new Map(),
        remove: new Set(),
        props: new Map(),
        sentGen: 0,
        doneGen: 0,
      };
      this.sources.set(srcId, src);
      this.map.addSource(srcId, {
        type: "geojson",
        data: featureCollection([]),
        cluster: clustered,
        clusterMaxZoom: CLUSTER_MAX_ZOOM,
        clusterRadius: 45,
        clusterProperties: clustered ? { w: ["+", ["get", "w"]] } : undefined,
        // Points only: no simplification work in the worker.
        tolerance: 0,
        buffer: layer.count > 10_000 ? 8 : 32,
      });
    }
    const view: TypeView = {
      type,
      silo,
      src,
      base: vehicle ? [...VEHICLE_TYPES].indexOf(type) * ID_STRIDE : 0,
      points: `a:${type}:points`,
      clusters: clustered ? `a:${type}:clusters` : null,
      vehicle,
      visible,
    };
    src.views.push(view);
    this.views.set(type, view);
    if (visible) this.visibleSilos.add(silo);
    this.updateAlertFilter();
    this.addLayers(view, layer.count);
    return view;
  }

  private addLayers(view: TypeView, count: number): void {
    const before = view.vehicle ? "z:top" : LABELS_ANCHOR;
    const visibility = view.visible ? "visible" : "none";
    const base = siloColour(view.silo);
    if (view.clusters) {
      this.map.addLayer(
        {
          id: view.clusters,
          type: "circle",
          source: view.src.id,
          filter: ["has", "point_count"],
          layout: { visibility },
          paint: {
            "circle-radius": ["interpolate", ["linear"], ["sqrt", ["get", "point_count"]], 1, 4, 40, 18],
            "circle-color": [
              "interpolate",
              ["linear"],
              ["/", ["get", "w"], ["get", "point_count"]],
              0,
              base,
              clusterLoadAlert(view.type),
              STATE_COLOURS[ALERT],
            ],
            "circle-opacity": 0.35,
            "circle-stroke-color": base,
            "circle-stroke-width": 1,
            "circle-stroke-opacity": 0.8,
          },
        },
        before,
      );
    }
    // Which features of the source are this type's.
    let filter: ExpressionSpecification | null = null;
    if (view.vehicle) {
      filter = ["all", [">=", ["id"], view.base], ["<", ["id"], view.base + ID_STRIDE]];
    } else if (view.clusters) filter = ["!", ["has", "point_count"]];
    const [small, big] = view.vehicle ? [4.5, 9] : count > 1000 ? [1.6, 5] : [3, 6.5];
    this.map.addLayer(
      {
        id: view.points,
        type: "circle",
        source: view.src.id,
        ...(filter ? { filter } : {}),
        layout: { visibility },
        paint: {
          "circle-color": colourExpr(view.silo),
          "circle-radius": radiusExpr(small, big),
          "circle-stroke-color": view.vehicle ? "#ffffff" : ["match", CODE, ALERT, "#ffffff", BACKGROUND],
          "circle-stroke-width": view.vehicle ? 1.5 : ["match", CODE, ALERT, 1.2, 0.4],
        },
      },
      before,
    );
  }

  /** The features of one type, from its column store. */
  private features(view: TypeView): Feature[] {
    const layer = this.layerOf(view.type);
    const out: Feature[] = [];
    if (!layer) return out;
    const { ids, lon, lat, codes, type } = layer;
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] === null || !Number.isFinite(lon[i]) || !Number.isFinite(lat[i])) continue;
      out.push(feature(view.base + i, lon[i], lat[i], codes[i], clusterWeight(type, codes[i])));
    }
    return out;
  }

  /** Show or hide every layer of a silo. */
  setSiloVisible(silo: string, visible: boolean): void {
    for (const v of this.views.values()) {
      if (v.silo !== silo) continue;
      v.visible = visible;
      for (const id of [v.points, v.clusters]) {
        if (id) this.map.setLayoutProperty(id, "visibility", visible ? "visible" : "none");
      }
    }
    if (visible) this.visibleSilos.add(silo);
    else this.visibleSilos.delete(silo);
    this.updateAlertFilter();
  }

  private updateAlertFilter(): void {
    this.map.setFilter("alerts:points", ["in", ["get", "silo"], ["literal", [...this.visibleSilos]]]);
  }

  /** Put the stream's changes on the map. */
  apply(applied: Applied[], deleted: { layer: TypeLayer; index: number; id: string }[]): void {
    const diffIds = new Map<SourceInfo, string[]>();
    for (const a of applied) {
      const view = this.views.get(a.layer.type);
      if (!view) continue;
      const src = view.src;
      const i = a.index;
      const fid = view.base + i;
      const id = a.layer.ids[i]!;
      const lon = a.layer.lon[i];
      const lat = a.layer.lat[i];
      const placed = Number.isFinite(lon) && Number.isFinite(lat);
      if (a.isNew && placed) {
        src.add.set(fid, feature(fid, lon, lat, a.code, clusterWeight(view.type, a.code)));
      } else if (a.moved && placed && !src.add.has(fid)) {
        src.move.set(fid, { type: "Point", coordinates: [lon, lat] });
      }
      if ((a.isNew || a.moved) && placed) {
        const list = diffIds.get(src);
        if (list) list.push(id);
        else diffIds.set(src, [id]);
      } else this.stateIds.push(id);
      if (a.code !== a.oldCode && !a.isNew) {
        this.states.push([src.id, fid, a.code]);
        // Cluster colours only depend on the weight: re-cluster only when it changes.
        const w = clusterWeight(view.type, a.code);
        if (src.clustered && w !== clusterWeight(view.type, a.oldCode)) src.props.set(fid, { s: a.code, w });
      }
      if (src.clustered && (a.code !== a.oldCode || a.moved || a.isNew)) this.trackAlert(view, a.layer, i);
      if (this.selected && this.selected.type === view.type && this.selected.index === i && a.moved) {
        this.showSelection(a.layer, i);
      }
    }
    for (const d of deleted) {
      const view = this.views.get(d.layer.type);
      if (!view) continue;
      const fid = view.base + d.index;
      view.src.remove.add(fid);
      view.src.add.delete(fid);
      view.src.move.delete(fid);
      if (this.alerts.delete(d.id)) this.alertsDirty = true;
    }
    this.flush();
    for (const [src, ids] of diffIds) this.stampQueue.push({ ids, src, gen: src.sentGen });
    // Software-rendered maps draw a few frames per second: show the state changes in the
    // same frame as the moved vehicles rather than one frame each.
    if (!this.waitFor.size) this.applyStates();
    else if (this.deferTimer === undefined) {
      this.deferTimer = window.setTimeout(() => this.applyStates(), MAX_STATE_DEFER_MS);
    }
  }

  /** Apply the pending feature states (one repaint for all of them). */
  private applyStates(): void {
    clearTimeout(this.deferTimer);
    this.deferTimer = undefined;
    this.waitFor.clear();
    for (const [source, id, code] of this.states) this.map.setFeatureState({ source, id }, { s: code });
    if (this.stateIds.length) this.stampQueue.push({ ids: this.stateIds, src: null, gen: 0 });
    this.states = [];
    this.stateIds = [];
    this.map.triggerRepaint();
  }

  /** Whether every diff the pending states wait for is ready to be drawn. */
  private diffsLoaded(): boolean {
    for (const [src, gen] of this.waitFor) {
      if (src.doneGen < gen || !this.map.isSourceLoaded(src.id)) return false;
    }
    return true;
  }

  /** Send pending diffs to the worker; cluster weights and alerts at their own pace. */
  private flush(): void {
    const now = performance.now();
    const propsDue = now - this.propsAt >= CLUSTER_REFRESH_MS;
    for (const src of this.sources.values()) {
      const update: DiffUpdate[] = [];
      for (const [id, geometry] of src.move) update.push({ id, newGeometry: geometry });
      if (propsDue && src.props.size) {
        for (const [id, p] of src.props) {
          update.push({ id, addOrUpdateProperties: [{ key: "s", value: p.s }, { key: "w", value: p.w }] });
        }
        src.props.clear();
      }
      if (!update.length && !src.add.size && !src.remove.size) continue;
      const gen = ++src.sentGen;
      this.waitFor.set(src, gen);
      const sent = (this.map.getSource(src.id) as GeoJSONSource)
        .updateData({
          add: src.add.size ? [...src.add.values()] : undefined,
          remove: src.remove.size ? [...src.remove] : undefined,
          update: update.length ? update : undefined,
        })
        .then(() => {
          src.doneGen = Math.max(src.doneGen, gen);
        });
      background(sent, "updateData");
      src.add.clear();
      src.move.clear();
      src.remove.clear();
    }
    if (propsDue) this.propsAt = now;
    if (this.alertsDirty && now - this.alertsAt >= ALERTS_REFRESH_MS) {
      this.alertsDirty = false;
      this.alertsAt = now;
      const alerts = featureCollection([...this.alerts.values()]);
      background((this.map.getSource("alerts") as GeoJSONSource).setData(alerts), "alerts");
    }
  }

  /** Call regularly (once a second): flushes throttled work even without new changes. */
  tick(): void {
    if (this.alertsDirty || [...this.sources.values()].some((s) => s.props.size)) {
      this.flush();
      this.map.triggerRepaint();
    }
  }

  /** Stamp the changes that are on screen now (called on every rendered frame): state
   * changes at the first frame after them, diffs once the worker has them and their
   * source's tiles are loaded again. */
  private stampRendered(): void {
    if (!this.stampQueue.length) return;
    const now = performance.timeOrigin + performance.now();
    const rest = [];
    const loaded = new Map<SourceInfo, boolean>();
    for (const entry of this.stampQueue) {
      const src = entry.src;
      let ready = true;
      if (src) {
        let isLoaded = loaded.get(src);
        if (isLoaded === undefined) {
          isLoaded = this.map.isSourceLoaded(src.id);
          loaded.set(src, isLoaded);
        }
        ready = src.doneGen >= entry.gen && isLoaded;
      }
      if (ready) {
        for (const id of entry.ids) {
          this.lastApplied.set(id, now);
          this.log.push(id, now);
        }
      } else rest.push(entry);
    }
    this.stampQueue = rest;
  }

  private trackAlert(view: TypeView, layer: TypeLayer, i: number): void {
    const id = layer.ids[i];
    if (!id) return;
    if (layer.codes[i] === ALERT && Number.isFinite(layer.lon[i])) {
      this.alerts.set(id, {
        type: "Feature",
        geometry: { type: "Point", coordinates: [layer.lon[i], layer.lat[i]] },
        properties: { silo: view.silo, eid: id },
      });
      this.alertsDirty = true;
    } else if (this.alerts.delete(id)) this.alertsDirty = true;
  }

  private rebuildAlerts(view: TypeView): void {
    const layer = this.layerOf(view.type);
    if (!layer) return;
    for (const id of [...this.alerts.keys()]) if (id.split(":")[2] === layer.type) this.alerts.delete(id);
    for (let i = 0; i < layer.ids.length; i++) if (layer.codes[i] === ALERT) this.trackAlert(view, layer, i);
    this.alertsDirty = true;
    this.tick();
  }

  /** Ring the selected asset (null: none). */
  select(layer: TypeLayer | null, index = 0): void {
    this.selected = layer ? { type: layer.type, index } : null;
    if (layer) this.showSelection(layer, index);
    else background((this.map.getSource("selection") as GeoJSONSource).setData(featureCollection([])));
  }

  /** Ring a point that belongs to no loaded layer. */
  selectPoint(point: [number, number]): void {
    this.selected = null;
    const feature = { type: "Feature" as const, geometry: { type: "Point" as const, coordinates: point }, properties: {} };
    background((this.map.getSource("selection") as GeoJSONSource).setData(featureCollection([feature])));
  }

  private showSelection(layer: TypeLayer, i: number): void {
    const lon = layer.lon[i];
    const lat = layer.lat[i];
    const features = Number.isFinite(lon)
      ? [{ type: "Feature" as const, geometry: { type: "Point" as const, coordinates: [lon, lat] }, properties: {} }]
      : [];
    background((this.map.getSource("selection") as GeoJSONSource).setData(featureCollection(features)));
  }

  /** What a rendered feature is: an asset, a cluster, or an alert. */
  identify(f: MapGeoJSONFeature): { id?: string; cluster?: { source: string; clusterId: number } } {
    if (f.layer.id === "alerts:points") return { id: String(f.properties.eid) };
    const view = this.views.get(f.layer.id.split(":")[1]);
    if (!view) return {};
    if (f.properties.cluster) {
      return { cluster: { source: view.src.id, clusterId: Number(f.properties.cluster_id) } };
    }
    const id = this.layerOf(view.type)?.ids[Number(f.id) - view.base];
    return id ? { id } : {};
  }

  /** How many assets of a type the map draws now (clusters count their members). */
  renderedCount(type: string): number {
    const view = this.views.get(type);
    if (!view || !view.visible) return 0;
    const layers = [view.points, view.clusters].filter((x): x is string => !!x);
    const seen = new Set<string>();
    let n = 0;
    for (const f of this.map.queryRenderedFeatures({ layers })) {
      const key = f.properties.cluster ? `c${f.properties.cluster_id}` : `p${f.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      n += f.properties.cluster ? Number(f.properties.point_count) : 1;
    }
    return n;
  }

  /** Where the map draws an asset now ([lon, lat]), or null when it is not drawn. */
  renderedPosition(type: string, index: number): [number, number] | null {
    const view = this.views.get(type);
    if (!view) return null;
    for (const f of this.map.queryRenderedFeatures({ layers: [view.points] })) {
      if (Number(f.id) === view.base + index && f.geometry.type === "Point") {
        const [lon, lat] = f.geometry.coordinates;
        return [lon, lat];
      }
    }
    return null;
  }

  /** Zoom into a cluster. */
  async expandCluster(source: string, clusterId: number, center: [number, number]): Promise<void> {
    const src = this.map.getSource(source) as GeoJSONSource;
    const zoom = await src.getClusterExpansionZoom(clusterId);
    this.map.easeTo({ center, zoom: Math.min(zoom, CLUSTER_MAX_ZOOM + 1) });
  }
}
