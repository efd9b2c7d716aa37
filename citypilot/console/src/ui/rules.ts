// The "Rules" dock tab: the alarm-management figures (ISA-18.2) beside their targets,
// and every rule with what it did — firings, errors with the entity and reason, a
// loop-guard stop — so that no rule fails unseen. Read every 10 s while the console runs.

import type { AlarmFigures, Api, RuleView } from "../api";
import { fill, h } from "./dom";
import { Poller } from "./poll";

const POLL_MS = 10_000;

function figureRow(label: string, value: string, ok: boolean | null, testid: string): HTMLElement {
  const mark = ok === null ? "" : ok ? " ✓" : " ✗";
  return h(
    "tr",
    { "data-testid": testid, "data-ok": ok === null ? "" : String(ok) },
    h("th", {}, label),
    h("td", { class: ok === false ? "bad" : "" }, `${value}${mark}`),
  );
}

export class RulesPanel {
  readonly el = h("section", { class: "rules-panel", "data-testid": "rules-panel" });
  private figures = h("table", { class: "props rule-figures", "data-testid": "alarm-figures" });
  private list = h("ul", { class: "rule-list", "data-testid": "rule-list" });
  private status = h("p", { class: "alarm-status", role: "status" });
  private poller = new Poller(POLL_MS, () => this.read());

  constructor(private api: Api) {
    this.el.append(
      h("h2", { class: "panel-title" }, "Alarm management, last 24 h"),
      this.figures,
      h("h2", { class: "panel-title" }, "Rules"),
      this.list,
      this.status,
    );
  }

  start(): void {
    this.poller.start();
  }

  stop(): void {
    this.poller.stop();
  }

  private async read(): Promise<void> {
    try {
      const [figures, rules] = await Promise.all([this.api.alarmFigures(), this.api.rules()]);
      this.renderFigures(figures);
      fill(this.list, ...rules.rules.map((r) => this.rule(r)));
      const broken = rules.loadErrors.length;
      this.status.textContent = broken ? `${broken} rule file(s) could not be loaded: ${rules.loadErrors.map((e) => `${e.source}: ${e.detail}`).join("; ")}` : "";
    } catch (e) {
      this.status.textContent = `Rules could not be read: ${(e as Error).message}`;
    }
  }

  private renderFigures(f: AlarmFigures): void {
    const split = Object.entries(f.prioritySplit)
      .map(([s, p]) => `${s} ${Math.round(p)} %`)
      .join(" · ");
    fill(
      this.figures,
      figureRow("Alarms per operator per 10 min", `${f.perOperatorPer10Min} (peak ${f.peakPer10Min})`, f.meetsTargets.perOperatorPer10Min, "figure-rate"),
      figureRow("Time in flood (> 10 per 10 min)", `${f.floodPercent} %`, f.meetsTargets.floodPercent, "figure-flood"),
      figureRow("Chattering alarms", String(f.chattering.length), f.meetsTargets.chattering, "figure-chattering"),
      figureRow("Stale alarms (active > 24 h)", String(f.stale.length), f.stale.length === 0, "figure-stale"),
      figureRow("Top 10 alarms' share", `${f.top10SharePercent} %`, null, "figure-top10"),
      figureRow("Priority split", split || "—", null, "figure-split"),
    );
  }

  private rule(r: RuleView): HTMLElement {
    const s = r.status;
    const state = s.stopped ? "stopped" : r.enabled ? "enabled" : "disabled";
    const li = h(
      "li",
      { class: `rule-item rule-${state}`, "data-testid": `rule-${r.id}`, "data-errors": s.errors, "data-state": state },
      h("span", { class: "rule-id" }, r.id),
      h("span", { class: "rule-counts muted" }, `v${r.version} · ${state} · ${s.firings} fired · ${s.errors} errors`),
    );
    if (s.stopped) li.append(h("p", { class: "rule-error" }, s.stopped.reason));
    const last = s.lastErrors[s.lastErrors.length - 1];
    if (last) {
      li.append(h("p", { class: "rule-error", "data-testid": `rule-error-${r.id}` }, `${last.entity ?? "—"}: ${last.reason}`));
    }
    return li;
  }
}
