// City modes: the operational level and the active modes in the top bar, and a dock
// panel to enter and leave a mode. Entering and leaving both ask for a reason and an
// explicit confirmation; the panel then follows the progress of the mode's commands
// (confirmed by the devices' own reports) from GET /api/v1/modes.

import { type Api, ApiError, type ConciseEntity, type ModeActivation, type ModeInfo, type ModeProgress, type ModesAnswer } from "../api";
import { fill, h } from "./dom";

/** How often the modes are read again: quickly while commands are under way. */
const POLL_MS = 5000;
const BUSY_POLL_MS = 1000;

function progressText(p: ModeProgress): string {
  const failed = p.failed ? `, ${p.failed} not confirmed` : "";
  const busy = p.underWay ? `, ${p.underWay} under way` : "";
  return `${p.confirmed}/${p.total} commands confirmed${busy}${failed}`;
}

function busy(a: ModeActivation): boolean {
  return a.progress.underWay > 0 || (a.restore?.progress.underWay ?? 0) > 0 || a.state !== "active";
}

/** The level badge and active-mode chips of the top bar. */
export class ModesBadge {
  readonly el = h("div", { class: "topbar-modes", "data-testid": "modes-header" });
  onOpen: () => void = () => {};

  render(answer: ModesAnswer): void {
    const level = h(
      "button",
      {
        class: `op-level op-level-${answer.level}`,
        "data-testid": "op-level",
        "data-level": answer.level,
        title: "Operational level — open the city modes",
      },
      `Level ${answer.level} · ${answer.levelName}`,
    );
    level.addEventListener("click", () => this.onOpen());
    const chips = answer.active.map((a) =>
      h("span", { class: "mode-chip", "data-testid": `mode-chip-${a.name}`, title: a.reason }, a.title),
    );
    fill(this.el, level, ...chips);
  }
}

/** The dock panel: every mode, with enter or leave, and the active ones' progress. */
export class ModesPanel {
  readonly el = h("section", { class: "modes-panel", "data-testid": "modes-panel" });
  readonly badge = new ModesBadge();
  private answer: ModesAnswer | null = null;
  private municipalities: ConciseEntity[] = [];
  private timer: number | undefined;
  private status = h("p", { class: "command-status", role: "status", "data-testid": "modes-status" });
  private confirming: string | null = null;

  constructor(
    private api: Api,
    private writer: boolean,
  ) {}

  /** Start reading the modes (and keep reading them). */
  start(): void {
    void this.refresh();
    void this.api.municipalities().then((m) => (this.municipalities = m), () => undefined);
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  async refresh(): Promise<void> {
    clearTimeout(this.timer);
    try {
      this.answer = await this.api.modes();
      this.badge.render(this.answer);
      if (!this.confirming) this.render();
    } catch (e) {
      this.status.textContent = `Modes could not be read: ${(e as Error).message}`;
    }
    const soon = this.answer?.active.some(busy) ? BUSY_POLL_MS : POLL_MS;
    this.timer = window.setTimeout(() => void this.refresh(), soon);
  }

  private render(): void {
    const answer = this.answer;
    if (!answer) return;
    const active = new Map(answer.active.map((a) => [a.name, a]));
    fill(
      this.el,
      h("h2", { class: "panel-title" }, "City modes"),
      h("p", { class: "modes-level", "data-testid": "modes-level" }, `Operational level ${answer.level} — ${answer.levelName}`),
      ...answer.modes.map((m) => this.row(m, active.get(m.name))),
      this.status,
    );
  }

  private row(mode: ModeInfo, on: ModeActivation | undefined): HTMLElement {
    const row = h(
      "div",
      { class: "mode-row", "data-testid": `mode-${mode.name}`, "data-active": on ? "true" : "false" },
      h("h3", {}, `${mode.title} `, h("span", { class: "mode-level" }, `level ${mode.level}`)),
      h("p", { class: "mode-description" }, mode.description),
    );
    if (on) {
      const done = on.progress.underWay === 0;
      row.append(
        h("p", { class: "mode-since" }, `On since ${new Date(on.enteredAt).toLocaleTimeString()} by ${on.enteredBy}: ${on.reason}`),
        h("p", { class: "mode-progress", "data-testid": `mode-progress-${mode.name}`, "data-done": done ? "true" : "false" }, progressText(on.progress)),
      );
    }
    if (this.writer) {
      const action = on ? "leave" : "enter";
      const button = h(
        "button",
        { class: on ? "btn" : "btn btn-danger", "data-testid": `mode-${action}-${mode.name}` },
        on ? "Leave" : "Enter",
      );
      button.addEventListener("click", () => this.askFirst(row, mode, action));
      row.append(button);
    }
    return row;
  }

  /** Entering or leaving waits for a reason and an explicit confirmation. */
  private askFirst(row: HTMLElement, mode: ModeInfo, action: "enter" | "leave"): void {
    row.querySelector(".command-confirm")?.remove();
    this.confirming = mode.name;
    const reason = h("input", { type: "text", "data-testid": "mode-reason", "aria-label": "Reason", placeholder: "Reason" });
    const scope = h(
      "select",
      { "data-testid": "mode-scope", "aria-label": "Scope" },
      h("option", { value: "" }, "Whole metropole"),
      ...this.municipalities.map((m) => h("option", { value: m.id }, String(m.name ?? m.id))),
    );
    const verb = action === "enter" ? "Enter" : "Leave";
    const yes = h("button", { class: "btn btn-danger", "data-testid": "mode-confirm" }, `Yes, ${verb.toLowerCase()} ${mode.title.toLowerCase()}`);
    const no = h("button", { class: "btn btn-quiet", "data-testid": "mode-cancel" }, "Cancel");
    const question =
      action === "enter"
        ? `${verb} ${mode.title}: every device it commands changes at once. Are you sure?`
        : `${verb} ${mode.title}: each device goes back to its state before the mode. Are you sure?`;
    const bar = h("div", { class: "command-confirm", role: "alertdialog" }, question, reason, action === "enter" ? scope : null, yes, no);
    yes.addEventListener("click", () => {
      this.confirming = null;
      bar.remove();
      void this.act(mode, action, reason.value, scope.value);
    });
    no.addEventListener("click", () => {
      this.confirming = null;
      bar.remove();
    });
    row.append(bar);
    reason.focus();
  }

  private async act(mode: ModeInfo, action: "enter" | "leave", reason: string, municipality: string): Promise<void> {
    this.status.dataset.state = "";
    this.status.textContent = `${mode.title}: ${action === "enter" ? "entering" : "leaving"}…`;
    try {
      if (action === "enter") {
        const scope: Record<string, string> = municipality ? { kind: "municipality", municipality } : { kind: "metropole" };
        await this.api.enterMode(mode.name, scope, reason);
      } else await this.api.leaveMode(mode.name, reason);
      this.status.textContent = `${mode.title}: ${action === "enter" ? "entered" : "left"}`;
    } catch (e) {
      const field = e instanceof ApiError && e.problem.field ? ` (${e.problem.field})` : "";
      this.status.dataset.state = "refused";
      this.status.textContent = `${mode.title} refused: ${(e as Error).message}${field}`;
    }
    await this.refresh();
  }
}
