// The asset panel: what one asset is (type, silo, municipality, department), its state,
// every property with its observation time, the last 24 h of its numeric properties as
// charts, and — for operators only — the commands of its type (./commands.ts).

import { type Api, ApiError, type CommandInfo, type NormalizedEntity, type TypeInfo } from "../api";
import type { CityData, Change } from "../data";
import { ago, formatDateTime, formatValue, humanAttr, humanType, unitSymbol } from "../format";
import { STATIC_ATTRS, thresholdsOf } from "../limits";
import { describeState, siloOf, STATE_NAMES } from "../silos";
import { Sparkline } from "./chart";
import { CommandForm } from "./commands";
import { fill, h } from "./dom";

const HIDDEN = new Set(["location", "name", "department", "refMunicipality"]);
const LEVEL = ["ok", "warn", "alert", "inactive", "busy"];
const CHART_WIDTH = 330;

type Attr = { type: string; value?: unknown; object?: string; observedAt?: string; unitCode?: string };

export class AssetPanel {
  readonly el: HTMLElement;
  current: string | null = null;
  private seq = 0;
  private charts = new Map<string, Sparkline>();
  private cells = new Map<string, { value: HTMLElement; at: HTMLElement }>();
  private head = h("div", { class: "asset-head" });
  private state = h("div", { class: "asset-state", "data-testid": "asset-state" });
  private meta = h("dl", { class: "asset-meta" });
  private controls = h("div", { class: "asset-controls-slot" });
  private props = h("table", { class: "asset-props", "data-testid": "asset-properties" });
  private chartsEl = h("div", { class: "asset-charts", "data-testid": "asset-charts" });
  private updated = h("dd", { "data-testid": "asset-updated" }, "…");
  private lastUpdate = 0;
  private commands: CommandForm;

  constructor(
    private api: Api,
    private data: CityData,
    private types: Map<string, TypeInfo>,
    private canWrite: boolean,
  ) {
    this.commands = new CommandForm(api);
    this.el = h(
      "section",
      { class: "asset-panel", "data-testid": "asset-panel" },
      this.head,
      this.state,
      this.meta,
      this.controls,
      h("h3", {}, "Last 24 h"),
      this.chartsEl,
      h("h3", {}, "Properties"),
      this.props,
    );
  }

  /** Show an asset; resolves when its properties and charts are drawn, with the entity
   * (null when it could not be read, or another asset was opened meanwhile). */
  async open(id: string): Promise<NormalizedEntity | null> {
    const seq = ++this.seq;
    this.current = id;
    this.clearCharts();
    this.cells.clear();
    const type = id.split(":")[2] ?? "";
    const silo = siloOf(type);
    const loc = this.data.locate(id);
    const name = loc ? loc.layer.name(loc.index) : id;
    fill(
      this.head,
      h(
        "div",
        { class: "asset-kind" },
        h("span", { class: "swatch", style: `background:${silo?.colour ?? "#888"}` }),
        `${humanType(type)} · ${silo?.label ?? type}`,
      ),
      h("h2", { class: "asset-name", "data-testid": "asset-name" }, name),
      h("code", { class: "asset-id", "data-testid": "asset-id" }, id),
    );
    this.renderState();
    this.renderControls(id, type);
    fill(this.props);
    fill(this.chartsEl, h("p", { class: "muted" }, "Loading history…"));
    this.el.dataset.loaded = "false";
    let entity: NormalizedEntity;
    try {
      entity = await this.api.entity(id);
    } catch (e) {
      if (seq !== this.seq) return null;
      const msg = e instanceof ApiError && e.status === 404 ? "This asset does not exist (any more)." : (e as Error).message;
      fill(this.chartsEl, h("p", { class: "muted" }, msg));
      return null;
    }
    if (seq !== this.seq) return null;
    this.renderMeta(entity);
    this.renderProps(entity);
    await this.renderCharts(entity);
    if (seq !== this.seq) return null;
    this.el.dataset.loaded = "true";
    return entity;
  }

  close(): void {
    this.seq++;
    this.current = null;
    this.clearCharts();
  }

  private renderState(): void {
    const loc = this.current ? this.data.locate(this.current) : undefined;
    if (!loc) {
      this.state.textContent = "";
      return;
    }
    const code = loc.layer.codes[loc.index];
    this.state.dataset.level = LEVEL[code];
    this.state.textContent = `${STATE_NAMES[code]} · ${describeState(loc.layer.type, loc.layer.getter(loc.index), code)}`;
  }

  private renderMeta(entity: NormalizedEntity): void {
    const attr = (n: string) => entity[n] as Attr | undefined;
    const muniId = attr("refMunicipality")?.object;
    const muni = muniId ? this.data.locate(muniId) : undefined;
    const muniName = muni ? muni.layer.name(muni.index) : (muniId ?? "—");
    const dept = (attr("department")?.value as string | undefined) ?? this.types.get(entity.type)?.department ?? "—";
    let last = 0;
    for (const [k, v] of Object.entries(entity)) {
      if (k === "id" || k === "type" || typeof v !== "object") continue;
      const t = (v as Attr).observedAt;
      if (t) last = Math.max(last, Date.parse(t));
    }
    const loc = this.data.locate(entity.id);
    if (loc) last = Math.max(last, loc.layer.heard[loc.index]);
    this.lastUpdate = last;
    this.updated.textContent = last ? `${formatDateTime(last)} (${ago(last)})` : "never";
    fill(
      this.meta,
      h("dt", {}, "Municipality"),
      h("dd", { "data-testid": "asset-municipality" }, muniName),
      h("dt", {}, "Department"),
      h("dd", { "data-testid": "asset-department" }, dept),
      h("dt", {}, "Last update"),
      this.updated,
    );
  }

  private renderProps(entity: NormalizedEntity): void {
    const spec = this.types.get(entity.type)?.attributes ?? {};
    const rows: HTMLElement[] = [];
    for (const [name, raw] of Object.entries(entity).sort(([a], [b]) => a.localeCompare(b))) {
      if (name === "id" || name === "type" || name === "@context" || HIDDEN.has(name)) continue;
      if (typeof raw !== "object" || raw === null) continue;
      const a = raw as Attr;
      const v = a.type === "Relationship" ? a.object : a.value;
      const value = h("td", { class: "prop-value" }, formatValue(v, a.unitCode ?? spec[name]?.unit));
      const at = h("td", { class: "prop-at" }, a.observedAt ? ago(Date.parse(a.observedAt)) : "");
      if (a.observedAt) at.title = formatDateTime(Date.parse(a.observedAt));
      this.cells.set(name, { value, at });
      rows.push(h("tr", { "data-attr": name }, h("th", {}, humanAttr(name)), value, at));
    }
    fill(this.props, ...rows);
  }

  /** Numeric properties that are measured (charted); static ones stay in the table. */
  private numericAttrs(type: string): string[] {
    const spec = this.types.get(type)?.attributes ?? {};
    return Object.entries(spec)
      .filter(([, s]) => s.kind === "Property" && (s.value === "number" || s.value === "integer"))
      .map(([n]) => n)
      .filter((n) => !STATIC_ATTRS.has(n));
  }

  private async renderCharts(entity: NormalizedEntity): Promise<void> {
    const names = this.numericAttrs(entity.type);
    if (!names.length) {
      fill(this.chartsEl, h("p", { class: "muted" }, "No numeric properties."));
      return;
    }
    const to = new Date(Date.now() + 60_000);
    const from = new Date(to.getTime() - 24 * 3600 * 1000);
    let series: Record<string, [string, number][]> = {};
    try {
      series = (await this.api.history(entity.id, names, from, to, "15m")).attrs;
    } catch {
      series = {};
    }
    if (this.current !== entity.id) return;
    const colour = siloOf(entity.type)?.colour ?? "#7fd1ff";
    const spec = this.types.get(entity.type)?.attributes ?? {};
    const blocks: HTMLElement[] = [];
    for (const name of names) {
      const points = (series[name] ?? [])
        .filter((p) => typeof p[1] === "number")
        .map((p) => [Date.parse(p[0]), p[1]] as [number, number]);
      if (!points.length) continue;
      const own = (n: string) => (entity[n] as Attr | undefined)?.value;
      const chart = new Sparkline(
        humanAttr(name),
        unitSymbol(spec[name]?.unit),
        colour,
        points,
        CHART_WIDTH,
        [from.getTime(), Date.now()],
        thresholdsOf(entity.type, name, own),
      );
      chart.el.dataset.attr = name;
      chart.el.dataset.testid = "asset-chart";
      this.charts.set(name, chart);
      blocks.push(chart.el);
    }
    fill(this.chartsEl, ...(blocks.length ? blocks : [h("p", { class: "muted" }, "No history in the last 24 h.")]));
  }

  private clearCharts(): void {
    for (const c of this.charts.values()) c.destroy();
    this.charts.clear();
  }

  /** A live change for the shown asset: refresh state, values and charts. */
  update(change: Change): void {
    if (change.id !== this.current) return;
    this.renderState();
    const t = Date.parse(change.observedAt) || Date.now();
    const spec = this.types.get(change.type)?.attributes ?? {};
    for (const [name, v] of Object.entries(change.attrs)) {
      const cell = this.cells.get(name);
      if (cell) {
        cell.value.textContent = formatValue(v, spec[name]?.unit);
        cell.at.textContent = ago(t);
        cell.at.title = formatDateTime(t);
      }
      const chart = this.charts.get(name);
      if (chart && typeof v === "number") chart.push(t, v);
    }
    this.lastUpdate = Math.max(this.lastUpdate, t);
    this.updated.textContent = `${formatDateTime(this.lastUpdate)} (${ago(this.lastUpdate)})`;
  }

  /** Re-render relative times ("2 min ago"). */
  tick(): void {
    if (this.current && this.lastUpdate) {
      this.updated.textContent = `${formatDateTime(this.lastUpdate)} (${ago(this.lastUpdate)})`;
    }
  }

  /** The commands of the type, for operators and admins only (viewers get none). */
  private renderControls(id: string, type: string): void {
    fill(this.controls);
    const commands = this.types.get(type)?.commands;
    if (!this.canWrite || !commands || !Object.keys(commands).length) return;
    this.commands.show(id, commands);
    this.controls.append(this.commands.el);
  }

  /** A command changed state (live stream). */
  commandChanged(cmd: CommandInfo): void {
    if (cmd.entityId === this.current) this.commands.update(cmd);
  }
}
