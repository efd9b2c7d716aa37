// The command form of the asset panel: one row per command the asset's type declares,
// inputs built from its declared parameters, a confirmation step for destructive ones,
// and the command's live state (from the stream's "commands" frames). What the device
// reports stays in the properties: this form only says what was asked and how far it got.

import { type Api, ApiError, type CommandInfo, type CommandSpec, type AttributeSpec } from "../api";
import { humanAttr } from "../format";
import { fill, h } from "./dom";

const STATE_TEXT: Record<string, string> = {
  pending: "waiting to be sent",
  sent: "sent, waiting for the device",
  acknowledged: "accepted by the device, waiting for its report",
  confirmed: "confirmed by the device's report",
  rejected: "rejected by the device",
  failed: "could not be delivered",
  timed_out: "not confirmed in time",
  expired: "not delivered before its deadline",
  superseded: "replaced by a newer command",
};

type Field = { name: string; el: HTMLElement; read: () => unknown };

function humanCommand(name: string): string {
  return humanAttr(name).replace(/^./, (c) => c.toUpperCase());
}

function input(command: string, name: string, spec: AttributeSpec): Field {
  const id = `command-${command}-${name}`;
  if (spec.choices?.length) {
    const el = h("select", { "data-testid": id, "aria-label": humanAttr(name) }, ...spec.choices.map((c) => h("option", { value: c }, c)));
    return { name, el, read: () => el.value };
  }
  if (spec.value === "number" || spec.value === "integer") {
    const el = h("input", {
      type: "number",
      "data-testid": id,
      "aria-label": humanAttr(name),
      min: spec.minimum ?? undefined,
      max: spec.maximum ?? undefined,
      step: spec.value === "integer" ? 1 : "any",
      value: spec.maximum ?? spec.minimum ?? 0,
    });
    return { name, el, read: () => Number(el.value) };
  }
  if (spec.value === "boolean") {
    const el = h("input", { type: "checkbox", "data-testid": id, "aria-label": humanAttr(name) });
    return { name, el, read: () => el.checked };
  }
  const el = h("input", { type: spec.value === "datetime" ? "datetime-local" : "text", "data-testid": id, "aria-label": humanAttr(name) });
  if (spec.value === "array") return { name, el, read: () => el.value.split(",").map((s) => s.trim()).filter(Boolean) };
  if (spec.value === "datetime") return { name, el, read: () => (el.value ? new Date(el.value).toISOString() : "") };
  return { name, el, read: () => el.value };
}

function isDestructive(spec: CommandSpec, args: Record<string, unknown>): boolean {
  if (spec.destructive) return true;
  return Object.entries(spec.destructiveWhen ?? {}).some(([arg, values]) => values.includes(args[arg]));
}

export class CommandForm {
  readonly el = h("div", { class: "asset-commands", "data-testid": "asset-controls", role: "group", "aria-label": "Commands" });
  private status = h("p", { class: "command-status", role: "status", "data-testid": "command-status" });
  private watching: string | null = null;
  private entity: string | null = null;

  constructor(private api: Api) {}

  /** Build the form for one asset (nothing for a type without commands). */
  show(entityId: string, commands: Record<string, CommandSpec>): void {
    this.entity = entityId;
    this.watching = null;
    this.status.textContent = "";
    this.status.dataset.state = "";
    const rows = Object.entries(commands)
      .filter(([, spec]) => Object.keys(spec.confirms ?? {}).length > 0)
      .map(([name, spec]) => this.row(name, spec));
    if (!rows.length) {
      fill(this.el);
      return;
    }
    fill(this.el, h("h3", {}, "Commands"), ...rows, this.status);
  }

  private row(name: string, spec: CommandSpec): HTMLElement {
    const fields = Object.entries(spec.parameters).map(([p, s]) => input(name, p, s));
    const send = h("button", { class: "btn", "data-testid": `command-${name}`, title: spec.description }, humanCommand(name));
    const row = h(
      "div",
      { class: "command-row", "data-command": name },
      send,
      ...fields.map((f) => h("label", { class: "command-arg" }, humanAttr(f.name), " ", f.el)),
    );
    send.addEventListener("click", () => {
      const args: Record<string, unknown> = {};
      for (const f of fields) args[f.name] = f.read();
      if (isDestructive(spec, args)) this.askFirst(row, name, args);
      else void this.submit(name, args);
    });
    return row;
  }

  /** A destructive command waits for an explicit second click. */
  private askFirst(row: HTMLElement, name: string, args: Record<string, unknown>): void {
    row.querySelector(".command-confirm")?.remove();
    const yes = h("button", { class: "btn btn-danger", "data-testid": "command-confirm" }, `Yes, ${humanCommand(name).toLowerCase()}`);
    const no = h("button", { class: "btn btn-quiet", "data-testid": "command-cancel" }, "Cancel");
    const bar = h("div", { class: "command-confirm", role: "alertdialog" }, `${humanCommand(name)} ${Object.values(args).join(" ")}: are you sure?`, yes, no);
    yes.addEventListener("click", () => {
      bar.remove();
      void this.submit(name, args);
    });
    no.addEventListener("click", () => bar.remove());
    row.append(bar);
  }

  private async submit(name: string, args: Record<string, unknown>): Promise<void> {
    const id = this.entity;
    if (!id) return;
    this.status.textContent = `${humanCommand(name)}: sending…`;
    try {
      const cmd = await this.api.command(id, name, args, "from the console");
      if (this.entity !== id) return;
      this.watching = cmd.id;
      this.render(cmd);
    } catch (e) {
      if (this.entity !== id) return;
      const field = e instanceof ApiError && e.problem.field ? ` (${e.problem.field})` : "";
      this.status.dataset.state = "refused";
      this.status.textContent = `${humanCommand(name)} refused: ${(e as Error).message}${field}`;
    }
  }

  /** A command changed (from the live stream); shown if it is the one being followed. */
  update(cmd: CommandInfo): void {
    if (cmd.id === this.watching) this.render(cmd);
  }

  private render(cmd: CommandInfo): void {
    const args = Object.values(cmd.args).join(" ");
    const answer = cmd.answer ? `: ${cmd.answer}` : "";
    this.status.dataset.state = cmd.state;
    this.status.textContent = `${humanCommand(cmd.command)} ${args} — ${STATE_TEXT[cmd.state] ?? cmd.state}${answer}`;
  }
}
