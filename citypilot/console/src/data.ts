// The console's copy of the city: one column store per asset type, kept current by the
// live stream. Columns (not objects) keep 250,000 assets cheap to hold, scan and update.

import type { TypeColumns } from "./api";
import { classify, type StateCode } from "./silos";

/** One change from the live stream. */
export interface Change {
  id: string;
  type: string;
  attrs: Record<string, unknown>;
  observedAt: string;
  lon: number | null;
  lat: number | null;
}

/** What applying a change did to one asset. */
export interface Applied {
  layer: TypeLayer;
  index: number;
  isNew: boolean;
  moved: boolean;
  oldCode: StateCode;
  code: StateCode;
}

export class TypeLayer {
  readonly index = new Map<string, number>();
  ids: (string | null)[] = [];
  lon: number[] = [];
  lat: number[] = [];
  /** Last time we heard of the asset (epoch ms). */
  heard: number[] = [];
  codes: StateCode[] = [];
  attrs = new Map<string, unknown[]>();
  /** Assets present (deleted ones keep their slot, with a null id). */
  count = 0;

  constructor(
    readonly type: string,
    readonly department: string,
  ) {}

  static fromColumns(doc: TypeColumns): TypeLayer {
    const layer = new TypeLayer(doc.type, doc.department);
    layer.ids = doc.ids.slice();
    layer.lon = doc.lon.map((v) => v ?? NaN);
    layer.lat = doc.lat.map((v) => v ?? NaN);
    layer.heard = doc.modifiedAt.map((t) => (t ? Date.parse(t) : 0));
    for (const [name, col] of Object.entries(doc.attrs)) layer.attrs.set(name, col);
    for (let i = 0; i < layer.ids.length; i++) layer.index.set(layer.ids[i]!, i);
    layer.count = layer.ids.length;
    layer.codes = new Array(layer.ids.length);
    for (let i = 0; i < layer.ids.length; i++) layer.codes[i] = layer.classify(i);
    return layer;
  }

  /** Read attributes of the asset at ``i``. */
  getter(i: number): (attr: string) => unknown {
    return (attr) => this.attrs.get(attr)?.[i];
  }

  value(i: number, attr: string): unknown {
    return this.attrs.get(attr)?.[i];
  }

  classify(i: number): StateCode {
    return classify(this.type, this.getter(i));
  }

  name(i: number): string {
    const n = this.value(i, "name");
    return typeof n === "string" && n ? n : (this.ids[i] ?? "");
  }

  /** Set one attribute value, growing a column the snapshot did not have. */
  set(i: number, attr: string, value: unknown): void {
    let col = this.attrs.get(attr);
    if (!col) {
      col = new Array(this.ids.length).fill(null);
      this.attrs.set(attr, col);
    }
    col[i] = value;
  }

  /** Add a slot for an asset first seen in the stream; returns its index. */
  add(id: string): number {
    const i = this.ids.length;
    this.ids.push(id);
    this.lon.push(NaN);
    this.lat.push(NaN);
    this.heard.push(0);
    this.codes.push(0);
    for (const col of this.attrs.values()) col.push(null);
    this.index.set(id, i);
    this.count++;
    return i;
  }

  remove(id: string): number | undefined {
    const i = this.index.get(id);
    if (i === undefined) return undefined;
    this.index.delete(id);
    this.ids[i] = null;
    this.count--;
    return i;
  }
}

export class CityData {
  readonly layers = new Map<string, TypeLayer>();

  /** Replace a type's layer by a fresh snapshot; returns the assets whose state changed. */
  load(doc: TypeColumns): { layer: TypeLayer; changed: Applied[] } {
    const layer = TypeLayer.fromColumns(doc);
    const old = this.layers.get(doc.type);
    const changed: Applied[] = [];
    if (old) {
      for (let i = 0; i < layer.ids.length; i++) {
        const j = old.index.get(layer.ids[i]!);
        const before = j === undefined ? undefined : old.codes[j];
        if (before !== undefined && before !== layer.codes[i])
          changed.push({ layer, index: i, isNew: false, moved: false, oldCode: before, code: layer.codes[i] });
      }
    }
    this.layers.set(doc.type, layer);
    return { layer, changed };
  }

  /** Find an asset by id. */
  locate(id: string): { layer: TypeLayer; index: number } | undefined {
    const type = id.split(":")[2];
    const layer = type ? this.layers.get(type) : undefined;
    const index = layer?.index.get(id);
    return layer && index !== undefined ? { layer, index } : undefined;
  }

  /** Apply stream changes to the columns. Changes of unknown types are ignored. */
  apply(changes: Change[]): Applied[] {
    const out: Applied[] = [];
    for (const ch of changes) {
      const layer = this.layers.get(ch.type);
      if (!layer) continue;
      let i = layer.index.get(ch.id);
      const isNew = i === undefined;
      if (i === undefined) i = layer.add(ch.id);
      for (const [name, value] of Object.entries(ch.attrs)) {
        if (name !== "location") layer.set(i, name, value);
      }
      let moved = false;
      if (ch.lon !== null && ch.lat !== null && (ch.lon !== layer.lon[i] || ch.lat !== layer.lat[i])) {
        layer.lon[i] = ch.lon;
        layer.lat[i] = ch.lat;
        moved = true;
      }
      const observed = Date.parse(ch.observedAt);
      layer.heard[i] = Math.max(layer.heard[i], Number.isNaN(observed) ? Date.now() : observed);
      const oldCode = layer.codes[i];
      const code = layer.classify(i);
      layer.codes[i] = code;
      out.push({ layer, index: i, isNew, moved, oldCode, code });
    }
    return out;
  }
}
