// The live event feed: what needs an operator's eye — an asset entering or leaving a
// warning or an alert (a lamp fails, a bus runs late, a river passes its alert level and
// falls back), assets added — newest first, filterable by silo. Routine changes (lamps
// switching at dusk, buses leaving the depot) are not events. Bounded: it keeps the latest
// MAX_EVENTS, and adds rows at most once per animation frame.

import { formatClock } from "../format";
import { ALERT, BUSY, INACTIVE, OK, SILOS, siloOf, type StateCode, WARN } from "../silos";

/** Whether a change of state code is worth an event. */
export function notable(oldCode: StateCode, code: StateCode): boolean {
  return oldCode !== code && (oldCode === WARN || oldCode === ALERT || code === WARN || code === ALERT);
}
import { h } from "./dom";
import { panel } from "./layout";

export interface FeedEvent {
  at: number;
  id: string;
  type: string;
  name: string;
  code: StateCode;
  text: string;
}

const MAX_EVENTS = 500;
const MAX_ROWS = 150;
const LEVEL: Record<number, string> = { [OK]: "ok", [WARN]: "warn", [ALERT]: "alert", [INACTIVE]: "inactive", [BUSY]: "busy" };

export class FeedPanel {
  readonly el: HTMLElement;
  private events: FeedEvent[] = [];
  private list: HTMLElement;
  private filter: HTMLSelectElement;
  private scheduled = false;
  /** Events pushed since the last frame. */
  private fresh: FeedEvent[] = [];
  onSelect: (id: string) => void = () => {};

  constructor() {
    this.filter = h("select", { "data-testid": "feed-filter", "aria-label": "Filter events by silo" });
    this.filter.append(h("option", { value: "" }, "All silos"));
    for (const s of SILOS) this.filter.append(h("option", { value: s.id }, s.label));
    this.filter.addEventListener("change", () => this.render());
    this.list = h("ol", { class: "feed-list", "data-testid": "feed-list", "aria-live": "off" });
    this.list.addEventListener("click", (ev) => {
      const li = (ev.target as HTMLElement).closest("li");
      if (li?.dataset.id) this.onSelect(li.dataset.id);
    });
    this.el = panel("Events", "feed-panel", h("div", { class: "feed-tools" }, this.filter), this.list);
    this.el.classList.add("panel-grow");
  }

  push(events: FeedEvent[]): void {
    if (!events.length) return;
    for (const e of events) this.events.push(e);
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    for (const e of events) this.fresh.push(e);
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => {
        this.scheduled = false;
        this.prepend();
      });
    }
  }

  /** Add the new events on top, drop the oldest rows: little DOM work per frame. */
  private prepend(): void {
    const silo = this.filter.value;
    const rows: HTMLElement[] = [];
    for (let i = this.fresh.length - 1; i >= 0 && rows.length < MAX_ROWS; i--) {
      const e = this.fresh[i];
      if (!silo || siloOf(e.type)?.id === silo) rows.push(this.row(e));
    }
    this.fresh = [];
    if (!rows.length) return;
    this.list.prepend(...rows);
    while (this.list.childElementCount > MAX_ROWS) this.list.lastElementChild!.remove();
  }

  /** Redraw the list from the kept events (after a filter change). */
  private render(): void {
    this.fresh = [];
    const silo = this.filter.value;
    const rows: HTMLElement[] = [];
    for (let i = this.events.length - 1; i >= 0 && rows.length < MAX_ROWS; i--) {
      const e = this.events[i];
      if (!silo || siloOf(e.type)?.id === silo) rows.push(this.row(e));
    }
    this.list.replaceChildren(...rows);
  }

  private row(e: FeedEvent): HTMLElement {
    const s = siloOf(e.type);
    return h(
      "li",
      {
        class: `feed-item level-${LEVEL[e.code]}`,
        "data-testid": "feed-item",
        "data-silo": s?.id ?? "",
        "data-id": e.id,
      },
      h("time", {}, formatClock(e.at)),
      h("span", { class: "swatch", style: `background:${s?.colour ?? "#888"}` }),
      h("span", { class: "feed-name" }, e.name),
      h("span", { class: "feed-text" }, e.text),
    );
  }
}
