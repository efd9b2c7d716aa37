// The connection indicator: live, connecting, reconnecting (with the next attempt), offline,
// and how long ago the last frame came.

import type { ConnectionState, LiveStream } from "../stream";
import { h } from "./dom";

const LABELS: Record<ConnectionState, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting",
  offline: "Offline",
};

export class ConnectionIndicator {
  readonly el: HTMLElement;
  private label: HTMLElement;
  lastFrameAt = 0;

  constructor(private stream: LiveStream) {
    this.label = h("span", { class: "conn-label" });
    this.el = h(
      "div",
      { class: "conn", "data-testid": "connection", role: "status", "aria-live": "polite" },
      h("span", { class: "conn-dot" }),
      this.label,
    );
    this.update();
  }

  update(): void {
    const state = this.stream.state;
    this.el.dataset.state = state;
    let text = LABELS[state];
    if (state === "reconnecting" && this.stream.retryAt > Date.now()) {
      text += ` in ${Math.ceil((this.stream.retryAt - Date.now()) / 1000)} s`;
    } else if (state === "live" && this.lastFrameAt) {
      const s = Math.round((Date.now() - this.lastFrameAt) / 1000);
      if (s >= 5) text += ` · last update ${s} s ago`;
    }
    this.label.textContent = text;
  }
}
