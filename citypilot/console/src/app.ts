// The console once signed in: wires the data, the map, the live stream and the panels.
//
// Start-up: open the stream, and when it says hello load one column snapshot per type
// (GET /api/v1/map/entities/{type}); frames arriving meanwhile are buffered and applied
// after. After a reconnection the snapshots are loaded again the same way (catch-up), and
// what changed while the console was away goes to the event feed.

import type { GeoJSONSource, MapGeoJSONFeature, Map as MapLibreMap } from "maplibre-gl";
import { type Api, ApiError, type TypeInfo } from "./api";
import { background } from "./format";
import type { Session } from "./auth";
import { canWrite } from "./auth";
import { type Applied, CityData, type TypeLayer } from "./data";
import { installDebugHook } from "./debug";
import { AssetLayers } from "./map/assets";
import { IncidentLayers } from "./map/incidents";
import { addLabelLayers, setMunicipalityLabels } from "./map/labels";
import { addBaseLayers, createMap, idle } from "./map/view";
import { ALERT, ASSET_TYPES, describeState, MAP_ATTRS, OK, siloOf, STATE_NAMES } from "./silos";
import { type Frame, LiveStream } from "./stream";
import { AssetPanel } from "./ui/asset";
import { ConnectionIndicator } from "./ui/connection";
import { h } from "./ui/dom";
import { type FeedEvent, FeedPanel, notable } from "./ui/feed";
import { FiguresPanel } from "./ui/figures";
import { BOARD_STATUSES, IncidentBoard, IncidentPanel, ReportForm } from "./ui/incidents";
import { LayersPanel } from "./ui/layers";
import { AlarmsPanel } from "./ui/alarms";
import { ModesPanel } from "./ui/modes";
import { RulesPanel } from "./ui/rules";
import { buildShell, type Shell } from "./ui/layout";
import { SearchBox } from "./ui/search";

const HELLO_WAIT_MS = 2000;
/** Zoom an asset chosen from a list is shown at: street level, out of any cluster. */
const SELECT_ZOOM = 17;
/** Entity types whose changes reload the incident board and its map layers. */
const OPS_TYPES = ["Incident", "RoadClosure"];
/** Alarm entities on the stream make the alarm list read itself again at once. */
const ALARM_TYPE = "Alarm";
/** Wait after such a change before reloading, so a burst of changes costs one reload. */
const OPS_RELOAD_MS = 300;

/** A point for a GeoProperty attribute of any geometry (its first position). */
function representativePoint(attr: unknown): [number, number] | null {
  let c = (attr as { value?: { coordinates?: unknown } } | undefined)?.value?.coordinates;
  while (Array.isArray(c) && Array.isArray(c[0])) c = c[0];
  return Array.isArray(c) && typeof c[0] === "number" && typeof c[1] === "number" ? [c[0], c[1]] : null;
}

export interface Timings {
  loginStartedAt?: number;
  mapReadyAt?: number;
  /** When the last snapshot answer arrived (parsed). */
  lastResponseAt?: number;
  dataLoadedAt?: number;
  firstIdleAt?: number;
}

export class ConsoleApp {
  readonly data = new CityData();
  readonly timings: Timings = {};
  types = new Map<string, TypeInfo>();
  map!: MapLibreMap;
  assets!: AssetLayers;
  stream!: LiveStream;
  shell!: Shell;
  layersPanel!: LayersPanel;
  feed!: FeedPanel;
  figures!: FiguresPanel;
  assetPanel!: AssetPanel;
  incidentBoard!: IncidentBoard;
  incidentPanel!: IncidentPanel;
  reportForm!: ReportForm;
  incidentLayers!: IncidentLayers;
  modes!: ModesPanel;
  alarms!: AlarmsPanel;
  rules!: RulesPanel;
  connection!: ConnectionIndicator;
  /** Source ids of the city's background layers. */
  baseSources: string[] = [];
  /** True once the first complete map render is done. */
  ready = false;
  framesApplied = 0;
  changesApplied = 0;
  onLogout: () => void = () => {};

  private buffer: Frame[] | null = [];
  private mapReady!: Promise<void>;
  private loading: Promise<void> | null = null;
  private reloadAgain = false;
  private timer: number | undefined;
  private fitted = false;
  /** Whether the map was framed on the municipalities before the assets arrived. */
  private framedEarly: Promise<boolean> = Promise.resolve(false);
  private stopped = false;
  private keyHandler = (ev: KeyboardEvent) => this.onKey(ev);
  private opsTimer: number | undefined;

  constructor(
    private root: HTMLElement,
    private api: Api,
    readonly session: Session,
  ) {
    this.timings.loginStartedAt = session.loginStartedAt;
  }

  async start(): Promise<void> {
    this.shell = buildShell(this.root);
    this.renderUser();
    const [types, layerNames] = await Promise.all([this.api.types(), this.api.mapLayers()]);
    this.types = new Map(types.map((t) => [t.name, t]));
    // The map (and its worker) starts while the stream connects and snapshots download.
    this.mapReady = createMap(this.shell.map, () => this.api.token).then((map) => {
      if (this.stopped) {
        map.remove(); // signed out while the map was starting
        return;
      }
      this.map = map;
      this.timings.mapReadyAt = performance.now();
      this.baseSources = addBaseLayers(map, layerNames);
      this.assets = new AssetLayers(map, (t) => this.data.layers.get(t));
      this.incidentLayers = new IncidentLayers(map, "z:vehicles");
      addLabelLayers(map, layerNames, "z:alerts");
      // Framed at once, so that the base map's tiles are made and drawn while the
      // assets download, not after them (software WebGL pays for every frame).
      this.framedEarly = this.frameMunicipalities();
      map.on("click", (e) => this.onMapClick(e.point));
      map.on("mousemove", (e) => this.onHover(e.point));
    });
    this.buildPanels();
    const streamTypes = [...ASSET_TYPES, ...OPS_TYPES, ALARM_TYPE].filter((t) => this.types.has(t));
    this.stream = new LiveStream(
      () => this.api.streamUrl(streamTypes),
      () => this.api.streamProtocols(),
    );
    this.connection = new ConnectionIndicator(this.stream);
    this.shell.topbar.status.append(this.connection.el);
    this.stream.onState = () => this.connection.update();
    this.stream.onFrame = (f) => this.onFrame(f);
    this.stream.onConnected = (again) => background(this.reload(again), "load");
    this.stream.onAuthError = async () => {
      if (await this.api.renew()) return true;
      this.api.onUnauthorized?.();
      return false;
    };
    this.stream.start();
    installDebugHook(this);
    // Normally the first snapshot waits for the stream's hello (no gap between the two);
    // without a stream within HELLO_WAIT_MS the map is drawn anyway.
    window.setTimeout(() => {
      if (!this.loading && !this.data.layers.size && !this.stopped) background(this.reload(false), "load");
    }, HELLO_WAIT_MS);
    this.timer = window.setInterval(() => this.tick(), 1000);
    document.addEventListener("keydown", this.keyHandler);
    await this.mapReady;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.opsTimer);
    document.removeEventListener("keydown", this.keyHandler);
    this.stream?.stop();
    this.modes?.stop();
    this.alarms?.stop();
    this.rules?.stop();
    this.map?.remove();
  }

  private renderUser(): void {
    const logout = h("button", { class: "btn btn-quiet", "data-testid": "logout" }, "Sign out");
    logout.addEventListener("click", () => this.onLogout());
    this.shell.topbar.user.append(
      h("span", { class: "user-name", "data-testid": "user-name" }, this.session.username),
      h("span", { class: `role role-${this.session.role}`, "data-testid": "user-role" }, this.session.role),
      logout,
    );
  }

  private buildPanels(): void {
    this.layersPanel = new LayersPanel(this.data);
    this.layersPanel.onToggle = (silo, visible) => this.assets?.setSiloVisible(silo, visible);
    this.feed = new FeedPanel();
    this.feed.onSelect = (id) => background(this.select(id, true), "select");
    const writer = canWrite(this.session.role);
    this.incidentBoard = new IncidentBoard(writer);
    this.incidentBoard.onSelect = (id) => background(this.selectIncident(id), "incident");
    this.incidentBoard.onReport = () => {
      this.reportForm.start();
      this.shell.dock.show("report");
    };
    this.alarms = new AlarmsPanel(this.api, writer);
    this.alarms.onSelect = (id) => background(this.select(id, true), "select");
    this.shell.sidebar.append(this.layersPanel.el, this.alarms.el, this.incidentBoard.el, this.feed.el);
    this.alarms.start();
    this.figures = new FiguresPanel(this.shell.figures, this.data);
    this.figures.onSelect = (id) => background(this.select(id, true), "select");
    const search = new SearchBox(this.api, this.data);
    search.onSelect = (id) => background(this.select(id, true), "select");
    this.shell.topbar.search.append(search.el);
    this.assetPanel = new AssetPanel(this.api, this.data, this.types, writer);
    this.shell.dock.add("asset", "Asset", this.assetPanel.el);
    this.incidentPanel = new IncidentPanel(this.api, writer);
    this.incidentPanel.onLoaded = (incident) => this.incidentLayers?.setRoutes(incident);
    this.incidentPanel.onSelectUnit = (id) => background(this.select(id, true), "select");
    this.shell.dock.add("incident", "Incident", this.incidentPanel.el);
    this.reportForm = new ReportForm(this.api, this.types.get("Incident"));
    this.reportForm.onOpened = (incident) => {
      this.reloadOpsSoon();
      background(this.selectIncident(incident.id), "incident");
    };
    this.shell.dock.add("report", "Report", this.reportForm.el);
    this.modes = new ModesPanel(this.api, writer);
    this.modes.badge.onOpen = () => this.shell.dock.show("modes");
    this.shell.topbar.modes.append(this.modes.badge.el);
    this.shell.dock.add("modes", "Modes", this.modes.el);
    this.modes.start();
    this.rules = new RulesPanel(this.api);
    this.shell.dock.add("rules", "Rules", this.rules.el);
    this.alarms.onOpenRules = () => this.shell.dock.show("rules");
    this.rules.start();
    this.shell.dock.onClose = (id) => {
      if (id === "asset") {
        this.assetPanel.close();
        this.assets.select(null);
      } else if (id === "incident") {
        this.incidentPanel.close();
        this.incidentLayers?.setRoutes(null);
      } else if (id === "report") this.reportForm.active = false;
    };
  }

  /** Load every type's snapshot (first time, or catch-up after a reconnection). */
  private reload(again: boolean): Promise<void> {
    if (this.loading) {
      this.reloadAgain = true;
      return this.loading;
    }
    this.buffer = this.buffer ?? [];
    this.loading = this.loadSnapshots(again).finally(() => {
      this.loading = null;
      if (this.reloadAgain && !this.stopped) {
        this.reloadAgain = false;
        background(this.reload(true), "reload");
      }
    });
    return this.loading;
  }

  private async loadSnapshots(again: boolean): Promise<void> {
    const wanted = [...ASSET_TYPES, "Municipality"].filter((t) => this.types.has(t));
    const events: FeedEvent[] = [];
    const now = Date.now();
    await Promise.all(
      wanted.map(async (type) => {
        let doc;
        try {
          doc = await this.api.typeColumns(type, MAP_ATTRS[type]).catch((e) => {
            // A server that knows the type differently: take every column instead.
            if (e instanceof ApiError && e.status === 400) return this.api.typeColumns(type);
            throw e;
          });
          this.timings.lastResponseAt = performance.now();
        } catch {
          return;
        }
        await this.mapReady;
        if (this.stopped || !this.assets) return;
        const { layer, changed } = this.data.load(doc);
        const silo = siloOf(type);
        if (silo) this.assets.setType(layer, silo.id, this.layersPanel.visible(silo.id));
        if (again) {
          for (const a of changed) if (notable(a.oldCode, a.code)) events.push(this.event(a, now));
        } else if (silo && !this.fitted) events.push(...this.activeAlerts(layer));
      }),
    );
    if (this.stopped) return;
    this.timings.dataLoadedAt = performance.now();
    setMunicipalityLabels(this.map, this.data.layers.get("Municipality"));
    const buffered = this.buffer ?? [];
    this.buffer = null;
    for (const f of buffered) this.applyFrame(f);
    events.sort((a, b) => a.at - b.at);
    this.feed.push(events);
    this.layersPanel.update();
    this.figures.update();
    background(this.reloadOps(), "incidents");
    if (!this.fitted) {
      this.fitted = true;
      if (!(await this.framedEarly)) this.fitAssets(false);
      await idle(this.map);
      this.timings.firstIdleAt = performance.now();
      this.ready = true;
      this.shell.root.dataset.ready = "true";
    }
  }

  /** Assets in alert when the console opens: the feed starts with them. */
  private activeAlerts(layer: TypeLayer): FeedEvent[] {
    const out: FeedEvent[] = [];
    for (let i = 0; i < layer.ids.length && out.length < 100; i++) {
      if (layer.ids[i] && layer.codes[i] === ALERT) {
        const a = { layer, index: i, isNew: false, moved: false, oldCode: ALERT, code: ALERT } as Applied;
        out.push(this.event(a, layer.heard[i] || Date.now()));
      }
    }
    return out;
  }

  /** Frame the whole metropole: its municipalities, or where its assets are. */
  fitCity(animate = true): void {
    background(
      this.frameMunicipalities(animate).then((done) => done || this.fitAssets(animate)),
      "frame",
    );
  }

  /** Frame every asset on the map. */
  private fitAssets(animate: boolean): void {
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    for (const layer of this.data.layers.values()) {
      if (!siloOf(layer.type)) continue;
      for (let i = 0; i < layer.lon.length; i++) {
        const x = layer.lon[i];
        const y = layer.lat[i];
        if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
    if (!Number.isFinite(x0)) return; // no asset yet
    this.map.fitBounds(
      [
        [x0, y0],
        [x1, y1],
      ],
      { padding: 40, animate, maxZoom: 16 },
    );
  }

  /** Frame the municipalities' outlines, once their layer is loaded; whether it could. */
  private async frameMunicipalities(animate = false): Promise<boolean> {
    const source = this.map.getSource("base:municipalities") as GeoJSONSource | undefined;
    const bounds = await source?.getBounds().catch(() => undefined);
    if (!bounds || bounds.isEmpty() || this.stopped) return false;
    this.map.fitBounds(bounds, { padding: 40, animate });
    return true;
  }

  private onFrame(frame: Frame): void {
    this.connection.lastFrameAt = Date.now();
    if (this.buffer) this.buffer.push(frame);
    else this.applyFrame(frame);
  }

  private applyFrame(frame: Frame): void {
    const applied = this.data.apply(frame.changes);
    const deleted: { layer: TypeLayer; index: number; id: string }[] = [];
    for (const id of frame.deleted ?? []) {
      const loc = this.data.locate(id);
      if (loc) {
        loc.layer.remove(id);
        deleted.push({ layer: loc.layer, index: loc.index, id });
      }
    }
    this.assets.apply(applied, deleted);
    const now = Date.now();
    const events: FeedEvent[] = [];
    for (const a of applied) {
      if (a.isNew || notable(a.oldCode, a.code)) events.push(this.event(a, now));
    }
    this.feed.push(events);
    const current = this.assetPanel.current;
    if (current) for (const c of frame.changes) if (c.id === current) this.assetPanel.update(c);
    for (const cmd of frame.commands ?? []) this.assetPanel.commandChanged(cmd);
    if (frame.changes.some((c) => OPS_TYPES.includes(c.type))) this.reloadOpsSoon();
    if (frame.changes.some((c) => c.type === ALARM_TYPE)) this.alarms.soon();
    this.framesApplied++;
    this.changesApplied += frame.changes.length;
  }

  private event(a: Applied, at: number): FeedEvent {
    const layer = a.layer;
    const i = a.index;
    const what = describeState(layer.type, layer.getter(i), a.code);
    let text: string;
    if (a.isNew) text = `new · ${what}`;
    else if (a.code === OK) text = `back to normal · ${what}`;
    else text = `${STATE_NAMES[a.code]} · ${what}`;
    return { at, id: layer.ids[i] ?? "", type: layer.type, name: layer.name(i), code: a.code, text };
  }

  private tick(): void {
    this.connection.update();
    if (this.buffer || !this.assets) return;
    this.layersPanel.update();
    this.figures.update();
    this.assets.tick();
    this.assetPanel.tick();
  }

  /** Open an asset: ring it on the map, bring it into view, show its panel. With ``fly``
   * (chosen from a list: search, feed, figures) the map flies to it at street level even
   * when it is already on screen, since at city scale it hides in a cluster. */
  async select(id: string, fly = false): Promise<void> {
    const loc = this.data.locate(id);
    let point: [number, number] | null = null;
    if (loc) {
      this.assets.select(loc.layer, loc.index);
      const lon = loc.layer.lon[loc.index];
      const lat = loc.layer.lat[loc.index];
      if (Number.isFinite(lon)) point = [lon, lat];
    } else this.assets.select(null);
    // The dock first, and the map resized to it at once: a resize that lands during the
    // flight would leave the asset off-centre by half the dock's width.
    this.shell.dock.show("asset");
    this.map.resize();
    if (point) this.bringIntoView(point, fly);
    const entity = await this.assetPanel.open(id);
    // An asset the console does not hold (another type, or just created): its location
    // comes with the entity.
    const where = !point && entity ? representativePoint(entity.location) : null;
    if (where && this.assetPanel.current === id) {
      this.assets.selectPoint(where);
      this.bringIntoView(where, fly);
    }
  }

  /** Reload the incident board, the incident followed and the map's incident layers. */
  async reloadOps(): Promise<void> {
    const [incidents, closures] = await Promise.all([
      this.api.incidents(BOARD_STATUSES).catch(() => null),
      this.api.closures().catch(() => null),
    ]);
    if (this.stopped) return;
    if (incidents) {
      this.incidentBoard.update(incidents);
      this.incidentLayers?.setIncidents(incidents.filter((i) => i.status !== "resolved"));
    }
    if (closures) this.incidentLayers?.setClosures(closures);
    if (this.incidentPanel.current) await this.incidentPanel.refresh();
  }

  private reloadOpsSoon(): void {
    clearTimeout(this.opsTimer);
    this.opsTimer = window.setTimeout(() => background(this.reloadOps(), "incidents"), OPS_RELOAD_MS);
  }

  /** Open an incident in the dock and bring it into view with its units' routes. */
  async selectIncident(id: string): Promise<void> {
    this.assets.select(null);
    this.shell.dock.show("incident");
    this.map.resize();
    const incident = await this.incidentPanel.open(id);
    const c = incident?.location?.coordinates;
    if (c && this.incidentPanel.current === id) this.bringIntoView(c, true);
  }

  private bringIntoView(point: [number, number], fly: boolean): void {
    const zoom = Math.max(this.map.getZoom(), fly ? SELECT_ZOOM : 15);
    if (fly) this.map.flyTo({ center: point, zoom, duration: 900, essential: true });
    else if (!this.map.getBounds().contains(point)) this.map.easeTo({ center: point, zoom, duration: 600 });
  }

  private onMapClick(point: { x: number; y: number }): void {
    if (this.reportForm.active && this.shell.dock.current === "report") {
      const at = this.map.unproject([point.x, point.y]);
      this.reportForm.pick([at.lng, at.lat]);
      return;
    }
    const box: [[number, number], [number, number]] = [
      [point.x - 8, point.y - 8],
      [point.x + 8, point.y + 8],
    ];
    const incident = this.map.queryRenderedFeatures(box, { layers: this.incidentLayers.clickable() })[0];
    if (incident?.properties?.id) {
      background(this.selectIncident(String(incident.properties.id)), "incident");
      return;
    }
    // The feature nearest to the click wins (dense layers overlap at city scale).
    let best: { d: number; f: MapGeoJSONFeature } | null = null;
    for (const f of this.map.queryRenderedFeatures(box, { layers: this.assets.clickableLayers() })) {
      if (f.geometry.type !== "Point") continue;
      const p = this.map.project(f.geometry.coordinates as [number, number]);
      const d = Math.hypot(p.x - point.x, p.y - point.y);
      if (!best || d < best.d) best = { d, f };
    }
    if (!best) return;
    const what = this.assets.identify(best.f);
    if (what.id) background(this.select(what.id), "select");
    else if (what.cluster && best.f.geometry.type === "Point") {
      const [lon, lat] = best.f.geometry.coordinates;
      background(this.assets.expandCluster(what.cluster.source, what.cluster.clusterId, [lon, lat]));
    }
  }

  private hoverPending = false;
  private onHover(point: { x: number; y: number }): void {
    if (this.hoverPending) return;
    this.hoverPending = true;
    requestAnimationFrame(() => {
      this.hoverPending = false;
      if (this.stopped) return;
      const box: [[number, number], [number, number]] = [
        [point.x - 4, point.y - 4],
        [point.x + 4, point.y + 4],
      ];
      const layers = [...this.assets.clickableLayers(), ...this.incidentLayers.clickable()];
      const hit = this.map.queryRenderedFeatures(box, { layers }).length > 0;
      this.map.getCanvas().style.cursor = hit ? "pointer" : "";
    });
  }

  private onKey(ev: KeyboardEvent): void {
    const typing = (ev.target as HTMLElement)?.closest?.("input, select, textarea");
    if (ev.key === "/" && !typing) {
      ev.preventDefault();
      (this.root.querySelector("[data-testid=search-input]") as HTMLInputElement | null)?.focus();
    } else if (ev.key === "Escape" && !typing) {
      this.shell.dock.close();
    } else if (ev.key === "h" && !typing && !ev.ctrlKey && !ev.metaKey) {
      this.fitCity();
    }
  }
}
