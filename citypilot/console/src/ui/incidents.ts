// The incident board: the open incidents in the sidebar (newest first, coloured by
// severity), and in the dock the incident an operator follows — what, where, its status,
// the units recommended by road travel time and the ones sent, the moves its status may
// make, and its timeline. A report form opens an incident where the operator clicks.
// The board is refreshed from the live stream: every Incident or RoadClosure change
// reloads it (see app.ts), so what a rule, the 311 desk or another operator did shows.

import { type Api, ApiError, type Candidate, type Incident, type TypeInfo } from "../api";
import { ago, formatClock, humanAttr } from "../format";
import { SEVERITY_COLOURS } from "../map/incidents";
import { fill, h } from "./dom";
import { panel } from "./layout";

/** Statuses an operator moves an incident to by hand (``dispatched`` comes with a dispatch). */
const NEXT_STATUS: Record<string, string[]> = {
  reported: ["resolved"],
  dispatched: ["on_scene", "resolved"],
  on_scene: ["resolved"],
  resolved: ["closed"],
  closed: [],
};

/** Statuses the board lists: everything not yet closed. */
export const BOARD_STATUSES = "reported,dispatched,on_scene,resolved";

function when(iso: string | null): string {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(t) ? "" : ago(t);
}

function problemText(e: unknown): string {
  const field = e instanceof ApiError && e.problem.field ? ` (${e.problem.field})` : "";
  return `${(e as Error).message}${field}`;
}

function swatch(severity: string): HTMLElement {
  return h("span", { class: "swatch round", style: `background:${SEVERITY_COLOURS[severity] ?? "#888"}` });
}

/** The sidebar list of open incidents, with the report button for operators. */
export class IncidentBoard {
  readonly el: HTMLElement;
  private list = h("ol", { class: "incident-list", "data-testid": "incident-list" });
  private empty = h("p", { class: "muted incident-empty" }, "No open incident.");
  shown: Incident[] = [];
  onSelect: (id: string) => void = () => {};
  onReport: () => void = () => {};

  constructor(canWrite: boolean) {
    const tools = h("div", { class: "feed-tools" });
    if (canWrite) {
      const report = h("button", { class: "btn", "data-testid": "incident-report" }, "Report an incident");
      report.addEventListener("click", () => this.onReport());
      tools.append(report);
    }
    this.list.addEventListener("click", (ev) => {
      const li = (ev.target as HTMLElement).closest("li");
      if (li?.dataset.id) this.onSelect(li.dataset.id);
    });
    this.el = panel("Incidents", "incident-board", tools, this.empty, this.list);
  }

  update(incidents: Incident[]): void {
    this.shown = incidents;
    this.empty.hidden = incidents.length > 0;
    fill(
      this.list,
      ...incidents.map((i) =>
        h(
          "li",
          { class: "incident-item", "data-testid": "incident-item", "data-id": i.id, "data-status": i.status },
          swatch(i.severity),
          h("span", { class: "incident-what" }, humanAttr(i.type)),
          h("span", { class: `incident-status status-${i.status}` }, humanAttr(i.status)),
          h("time", { class: "muted" }, when(i.reportedAt)),
        ),
      ),
    );
  }
}

/** The dock panel of one incident. */
export class IncidentPanel {
  readonly el = h("section", { class: "asset-panel incident-panel", "data-testid": "incident-panel" });
  current: string | null = null;
  incident: Incident | null = null;
  private seq = 0;
  private candidates: Candidate[] = [];
  private message = h("p", { class: "command-status", role: "status", "data-testid": "incident-message" });
  /** The incident was read again (its units and routes may have changed). */
  onLoaded: (incident: Incident) => void = () => {};
  onSelectUnit: (id: string) => void = () => {};

  constructor(
    private api: Api,
    private canWrite: boolean,
  ) {}

  async open(id: string): Promise<Incident | null> {
    this.current = id;
    this.candidates = [];
    this.message.textContent = "";
    return this.refresh();
  }

  close(): void {
    this.current = null;
    this.incident = null;
  }

  /** Read the incident again and redraw it. */
  async refresh(): Promise<Incident | null> {
    const id = this.current;
    if (!id) return null;
    const seq = ++this.seq;
    let incident: Incident;
    try {
      incident = await this.api.incident(id);
    } catch (e) {
      if (seq === this.seq) fill(this.el, h("p", { class: "muted" }, `Cannot read ${id}: ${problemText(e)}`));
      return null;
    }
    if (seq !== this.seq || this.current !== id) return null;
    this.incident = incident;
    this.render(incident);
    this.onLoaded(incident);
    return incident;
  }

  private render(i: Incident): void {
    const meta = h("dl", { class: "asset-meta" });
    const rows: [string, string | null][] = [
      ["Severity", i.severity],
      ["Reported", i.reportedAt ? `${formatClock(Date.parse(i.reportedAt))} by ${i.reportedBy ?? "?"}` : null],
      ["Source", i.source],
      ["Municipality", i.municipality],
      ["Description", i.description],
    ];
    if (i.prioritySavedSeconds) rows.push(["Saved by signal priority", `${Math.round(i.prioritySavedSeconds)} s`]);
    for (const [k, v] of rows) if (v) meta.append(h("dt", {}, k), h("dd", {}, v));
    fill(
      this.el,
      h("div", { class: "asset-kind" }, swatch(i.severity), `Incident · ${i.severity}`),
      h("h2", { class: "asset-name", "data-testid": "incident-title" }, humanAttr(i.type)),
      h("code", { class: "asset-id" }, i.id),
      h("div", { class: "asset-state", "data-testid": "incident-status", "data-status": i.status }, humanAttr(i.status)),
      meta,
      this.canWrite ? this.actions(i) : null,
      this.message,
      this.units(i),
      h("h3", {}, "Timeline"),
      h(
        "ol",
        { class: "timeline", "data-testid": "incident-timeline" },
        ...(i.timeline ?? []).map((t) =>
          h(
            "li",
            { "data-action": t.action },
            h("time", {}, formatClock(Date.parse(t.at))),
            h("span", { class: "timeline-by" }, t.by),
            h("span", {}, t.detail || t.action),
          ),
        ),
      ),
    );
  }

  private units(i: Incident): HTMLElement | null {
    const sent = Object.entries(i.assignments);
    if (!sent.length) return null;
    const list = h("ul", { class: "incident-units", "data-testid": "incident-units" });
    for (const [unit, job] of sent) {
      const li = h(
        "li",
        { "data-id": unit },
        h("a", { href: "#", class: "unit-link" }, unit.split(":").pop() ?? unit),
        job.eta ? ` · ETA ${formatClock(Date.parse(job.eta))}` : "",
      );
      li.querySelector("a")!.addEventListener("click", (ev) => {
        ev.preventDefault();
        this.onSelectUnit(unit);
      });
      list.append(li);
    }
    return h("div", {}, h("h3", {}, "Units sent"), list);
  }

  private actions(i: Incident): HTMLElement {
    const bar = h("div", { class: "command-row", "data-testid": "incident-actions" });
    if (["reported", "dispatched", "on_scene"].includes(i.status)) {
      const rec = h("button", { class: "btn", "data-testid": "incident-recommend" }, "Recommend units");
      rec.addEventListener("click", () => void this.recommend(i.id));
      bar.append(rec);
    }
    for (const next of NEXT_STATUS[i.status] ?? []) {
      const b = h("button", { class: "btn btn-quiet", "data-testid": `incident-to-${next}` }, `Mark ${humanAttr(next)}`);
      b.addEventListener("click", () => void this.move(i.id, next));
      bar.append(b);
    }
    const out = h("div", {}, bar);
    if (this.candidates.length) out.append(this.candidateList(i.id));
    return out;
  }

  private candidateList(id: string): HTMLElement {
    const boxes: HTMLInputElement[] = [];
    const list = h("ul", { class: "incident-candidates", "data-testid": "incident-candidates" });
    this.candidates.forEach((c, k) => {
      const box = h("input", { type: "checkbox", value: c.unit, "data-testid": "candidate-pick", checked: k === 0 });
      boxes.push(box);
      list.append(
        h(
          "li",
          { "data-id": c.unit },
          h(
            "label",
            {},
            box,
            ` ${c.callSign ?? c.unit.split(":").pop()} (${humanAttr(c.kind)}) · ${Math.round(c.etaSeconds)} s · ${(c.distanceMetres / 1000).toFixed(1)} km`,
          ),
        ),
      );
    });
    const send = h("button", { class: "btn btn-danger", "data-testid": "incident-dispatch" }, "Dispatch");
    send.addEventListener("click", () => {
      const units = boxes.filter((b) => b.checked).map((b) => b.value);
      if (units.length) void this.dispatch(id, units);
    });
    return h("div", {}, list, send);
  }

  private async recommend(id: string): Promise<void> {
    this.message.textContent = "Finding the nearest units by road…";
    try {
      this.candidates = await this.api.recommendation(id);
      this.message.textContent = this.candidates.length ? "" : "No unit is available.";
    } catch (e) {
      this.message.textContent = `No recommendation: ${problemText(e)}`;
      return;
    }
    if (this.incident && this.current === id) this.render(this.incident);
  }

  private async dispatch(id: string, units: string[]): Promise<void> {
    this.message.textContent = `Dispatching ${units.length} unit(s)…`;
    try {
      await this.api.dispatch(id, units);
      this.candidates = [];
      this.message.textContent = "";
    } catch (e) {
      this.message.textContent = `Dispatch refused: ${problemText(e)}`;
      return;
    }
    await this.refresh();
  }

  private async move(id: string, status: string): Promise<void> {
    try {
      await this.api.setIncidentStatus(id, status, "from the console");
    } catch (e) {
      this.message.textContent = `Refused: ${problemText(e)}`;
      return;
    }
    await this.refresh();
  }
}

/** The report form: type, severity, description, and the point the operator clicks. */
export class ReportForm {
  readonly el = h("section", { class: "asset-panel", "data-testid": "report-panel" });
  private where: [number, number] | null = null;
  private whereText = h("p", { class: "muted", "data-testid": "report-where" }, "Click the map where it happens.");
  private message = h("p", { class: "command-status", role: "status", "data-testid": "report-message" });
  private submit = h("button", { class: "btn", "data-testid": "report-submit", disabled: true }, "Open the incident");
  active = false;
  onOpened: (incident: Incident) => void = () => {};

  constructor(
    private api: Api,
    incidentType: TypeInfo | undefined,
  ) {
    const choose = (name: string, choices: string[], initial: string) =>
      h(
        "select",
        { "data-testid": `report-${name}`, "aria-label": name },
        ...choices.map((c) => h("option", { value: c, selected: c === initial }, humanAttr(c))),
      );
    const kinds = incidentType?.attributes.incidentType?.choices ?? ["other"];
    const severities = incidentType?.attributes.severity?.choices ?? ["moderate"];
    const kind = choose("type", kinds, kinds[0]);
    const severity = choose("severity", severities, "moderate");
    const text = h("textarea", { "data-testid": "report-description", maxlength: 4000, rows: 3, "aria-label": "description" });
    this.submit.addEventListener("click", () => void this.send(kind.value, severity.value, text.value));
    fill(
      this.el,
      h("h2", { class: "asset-name" }, "Report an incident"),
      this.whereText,
      h("label", { class: "command-arg" }, "Type ", kind),
      h("label", { class: "command-arg" }, " Severity ", severity),
      h("label", { class: "report-text" }, "What happens", text),
      this.submit,
      this.message,
    );
  }

  /** Start a new report: the next click on the map gives its location. */
  start(): void {
    this.active = true;
    this.where = null;
    this.submit.disabled = true;
    this.message.textContent = "";
    this.whereText.textContent = "Click the map where it happens.";
  }

  /** The operator clicked the map while the form is open. */
  pick(lngLat: [number, number]): void {
    this.where = lngLat;
    this.submit.disabled = false;
    this.whereText.textContent = `At ${lngLat[1].toFixed(5)}, ${lngLat[0].toFixed(5)}`;
  }

  private async send(type: string, severity: string, description: string): Promise<void> {
    if (!this.where) return;
    this.submit.disabled = true;
    try {
      const incident = await this.api.reportIncident({
        type,
        severity,
        description,
        location: { type: "Point", coordinates: this.where },
      });
      this.active = false;
      this.onOpened(incident);
    } catch (e) {
      this.message.textContent = `Refused: ${problemText(e)}`;
      this.submit.disabled = false;
    }
  }
}
