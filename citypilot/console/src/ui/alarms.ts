// The alarm list (sidebar): counts by severity, filters, acknowledge, shelve, and a
// jump to the asset on the map. Read from GET /api/v1/alarms as soon as the live stream
// carries an alarm's change (at most every half second), every few seconds anyway, and
// after each action; a new critical alarm flashes the panel (and beeps, when asked).

import { type AlarmView, type AlarmsAnswer, type Api, ApiError } from "../api";
import { fill, h } from "./dom";
import { Poller } from "./poll";

const POLL_MS = 3000;
/** Alarm changes on the stream are gathered this long before the list is read again. */
const SOON_MS = 500;
const SEVERITIES = ["critical", "high", "medium", "low"] as const;
const SHELVE_CHOICES: [string, number][] = [
  ["15 min", 900],
  ["1 hour", 3600],
  ["8 hours", 28800],
];

/** The last segment of an alarm's id, for test ids and short labels. */
function local(id: string): string {
  return id.split(":").pop() ?? id;
}

function ago(iso: string): string {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

export class AlarmsPanel {
  readonly el = h("section", { class: "panel alarms-panel", "data-testid": "alarms-panel" });
  onSelect: (entityId: string) => void = () => {};
  onOpenRules: () => void = () => {};
  private counts = h("div", { class: "alarm-counts", "data-testid": "alarm-counts" });
  private list = h("ul", { class: "alarm-list", "data-testid": "alarm-list" });
  private status = h("p", { class: "alarm-status", role: "status", "data-testid": "alarm-status" });
  private severity = h("select", { "data-testid": "alarm-filter-severity", "aria-label": "Severity" });
  private state = h("select", { "data-testid": "alarm-filter-state", "aria-label": "State" });
  private shelved = h("input", { type: "checkbox", "data-testid": "alarm-filter-shelved" });
  private beep = h("input", { type: "checkbox", "data-testid": "alarm-beep" });
  private poller = new Poller(POLL_MS, () => this.read());
  private soonTimer: number | undefined;
  private seenCritical = new Set<string>();
  private first = true;

  constructor(
    private api: Api,
    private writer: boolean,
  ) {
    this.severity.append(h("option", { value: "" }, "every severity"), ...SEVERITIES.map((s) => h("option", { value: s }, s)));
    this.state.append(
      h("option", { value: "" }, "open"),
      h("option", { value: "active-unacknowledged,cleared-unacknowledged" }, "unacknowledged"),
      h("option", { value: "active-unacknowledged,active-acknowledged" }, "active"),
      h("option", { value: "cleared" }, "closed"),
    );
    for (const input of [this.severity, this.state, this.shelved]) {
      input.addEventListener("change", () => void this.refresh());
    }
    const rules = h("button", { class: "btn btn-quiet alarm-rules", "data-testid": "open-rules", title: "Alarm-management figures and the rules' errors" }, "Figures & rules");
    rules.addEventListener("click", () => this.onOpenRules());
    this.el.append(
      h("h2", { class: "panel-title" }, "Alarms ", rules),
      this.counts,
      h(
        "div",
        { class: "alarm-tools" },
        this.severity,
        this.state,
        h("label", { class: "alarm-check" }, this.shelved, " shelved too"),
        h("label", { class: "alarm-check", title: "Flash and beep on a new critical alarm" }, this.beep, " sound"),
      ),
      this.list,
      this.status,
    );
  }

  start(): void {
    this.poller.start();
  }

  stop(): void {
    this.poller.stop();
    clearTimeout(this.soonTimer);
  }

  refresh(): Promise<void> {
    return this.poller.now();
  }

  /** An alarm changed (the live stream says so): read the list again shortly. */
  soon(): void {
    if (this.soonTimer !== undefined) return;
    this.soonTimer = window.setTimeout(() => {
      this.soonTimer = undefined;
      void this.refresh();
    }, SOON_MS);
  }

  private async read(): Promise<void> {
    const params = new URLSearchParams({ limit: "100" });
    if (this.severity.value) params.set("severity", this.severity.value);
    if (this.state.value) params.set("state", this.state.value);
    if (!this.shelved.checked && this.state.value !== "cleared") {
      params.set("shelved", "false");
      params.set("suppressed", "false");
    }
    try {
      this.render(await this.api.alarms(params));
    } catch (e) {
      this.status.textContent = `Alarms could not be read: ${(e as Error).message}`;
    }
  }

  private render(answer: AlarmsAnswer): void {
    fill(
      this.counts,
      ...SEVERITIES.map((s) =>
        h(
          "span",
          { class: `alarm-count sev-${s}`, "data-testid": `alarm-count-${s}`, "data-count": answer.attention[s], title: `${answer.counts[s]} open, ${answer.attention[s]} needing attention` },
          `${answer.attention[s]} ${s}`,
        ),
      ),
    );
    fill(this.list, ...answer.alarms.map((a) => this.item(a)));
    if (!answer.alarms.length) this.list.append(h("li", { class: "alarm-empty muted" }, "No alarm"));
    this.status.textContent = `${answer.total} shown`;
    this.notice(answer.alarms);
  }

  /** Flash (and beep) for a critical alarm not seen before. */
  private notice(alarms: AlarmView[]): void {
    const fresh = alarms.filter((a) => a.severity === "critical" && a.state === "active-unacknowledged" && !this.seenCritical.has(a.id));
    for (const a of fresh) this.seenCritical.add(a.id);
    if (this.first) {
      this.first = false;
      return;
    }
    if (!fresh.length) return;
    this.el.classList.remove("alarm-flash");
    void this.el.offsetWidth; // restart the animation
    this.el.classList.add("alarm-flash");
    if (this.beep.checked) beep();
  }

  private item(a: AlarmView): HTMLElement {
    const id = local(a.id);
    const repeats = a.count > 1 ? ` ×${a.count}` : "";
    const marks = [a.shelved ? "shelved" : "", a.suppressed ? "suppressed" : "", a.acknowledged ? "acknowledged" : ""].filter(Boolean).join(", ");
    const li = h(
      "li",
      { class: `alarm-item sev-${a.severity}`, "data-testid": `alarm-${id}`, "data-state": a.state, "data-entity": a.entity },
      h("span", { class: `alarm-sev sev-${a.severity}` }, a.severity),
      h("span", { class: "alarm-message", title: a.entity }, `${a.message}${repeats}`),
      h("time", { dateTime: a.lastRaisedAt, title: a.lastRaisedAt }, ago(a.lastRaisedAt)),
      h("span", { class: "alarm-meta muted" }, `${a.rule} · ${a.state}${marks ? ` · ${marks}` : ""}`),
    );
    const tools = h("div", { class: "alarm-actions" });
    const locate = h("button", { class: "btn btn-quiet", "data-testid": `alarm-locate-${id}`, title: "Show the asset on the map" }, "Locate");
    locate.addEventListener("click", () => this.onSelect(a.entity));
    tools.append(locate);
    if (this.writer && a.state !== "cleared") {
      if (!a.acknowledged) {
        const ack = h("button", { class: "btn", "data-testid": `alarm-ack-${id}` }, "Acknowledge");
        ack.addEventListener("click", () => void this.act(() => this.api.acknowledgeAlarm(a.id), "acknowledged"));
        tools.append(ack);
      }
      if (a.shelved) {
        const back = h("button", { class: "btn btn-quiet", "data-testid": `alarm-unshelve-${id}` }, "Unshelve");
        back.addEventListener("click", () => void this.act(() => this.api.unshelveAlarm(a.id), "unshelved"));
        tools.append(back);
      } else {
        const choice = h("select", { "data-testid": `alarm-shelve-for-${id}`, "aria-label": "Shelve for" }, ...SHELVE_CHOICES.map(([label, s]) => h("option", { value: s }, label)));
        const shelve = h("button", { class: "btn btn-quiet", "data-testid": `alarm-shelve-${id}` }, "Shelve");
        shelve.addEventListener("click", () =>
          void this.act(() => this.api.shelveAlarm(a.id, Number(choice.value), "shelved from the console"), "shelved"),
        );
        tools.append(choice, shelve);
      }
    }
    li.append(tools);
    return li;
  }

  private async act(call: () => Promise<unknown>, done: string): Promise<void> {
    try {
      await call();
      this.status.textContent = `Alarm ${done}`;
    } catch (e) {
      this.status.textContent = e instanceof ApiError ? e.message : `Failed: ${(e as Error).message}`;
    }
    await this.refresh();
  }
}

/** A short tone through WebAudio (no sound file to load). */
function beep(): void {
  try {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    osc.frequency.value = 880;
    osc.connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.25);
  } catch {
    /* no audio: the flash is enough */
  }
}
