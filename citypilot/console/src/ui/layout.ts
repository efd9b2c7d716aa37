// The console's frame: top bar, key figures, a left column of panels, the map, and a
// right-hand dock of tabbed panels. Later features (alarms, commands, incidents, modes)
// register their own panels in the sidebar or the dock instead of growing one page.

import { h } from "./dom";

export interface Shell {
  root: HTMLElement;
  topbar: { search: HTMLElement; modes: HTMLElement; status: HTMLElement; user: HTMLElement };
  figures: HTMLElement;
  sidebar: HTMLElement;
  map: HTMLElement;
  dock: Dock;
}

export function buildShell(root: HTMLElement): Shell {
  const search = h("div", { class: "topbar-search" });
  const modes = h("div", { class: "topbar-modes-slot" });
  const status = h("div", { class: "topbar-status" });
  const user = h("div", { class: "topbar-user" });
  const figures = h("section", { class: "figures", "data-testid": "figures", "aria-label": "Key figures" });
  const sidebar = h("aside", { class: "sidebar", "aria-label": "Layers and events" });
  const map = h("div", { class: "map", id: "map", "data-testid": "map" });
  const dockEl = h("aside", { class: "dock", "data-testid": "dock", hidden: true });
  const app = h(
    "div",
    { class: "app", "data-testid": "console" },
    h(
      "header",
      { class: "topbar" },
      h("div", { class: "brand" }, h("span", { class: "brand-mark" }), "CityPilot"),
      search,
      modes,
      status,
      user,
    ),
    figures,
    h("main", { class: "workspace" }, sidebar, map, dockEl),
  );
  root.replaceChildren(app);
  return { root: app, topbar: { search, modes, status, user }, figures, sidebar, map, dock: new Dock(dockEl) };
}

/** A titled panel for the sidebar. */
export function panel(title: string, testid: string, ...body: Node[]): HTMLElement {
  return h(
    "section",
    { class: "panel", "data-testid": testid },
    h("h2", { class: "panel-title" }, title),
    ...body,
  );
}

interface DockPanel {
  id: string;
  title: string;
  el: HTMLElement;
  tab: HTMLButtonElement;
}

/** The right-hand dock: tabbed panels, hidden while none is open. */
export class Dock {
  private panels = new Map<string, DockPanel>();
  private tabs: HTMLElement;
  private body: HTMLElement;
  current: string | null = null;
  onClose: (id: string) => void = () => {};

  constructor(private el: HTMLElement) {
    this.tabs = h("nav", { class: "dock-tabs", role: "tablist" });
    const close = h(
      "button",
      { class: "dock-close", title: "Close (Esc)", "aria-label": "Close panel", "data-testid": "dock-close" },
      "×",
    );
    close.addEventListener("click", () => this.close());
    this.body = h("div", { class: "dock-body" });
    el.append(h("div", { class: "dock-head" }, this.tabs, close), this.body);
  }

  add(id: string, title: string, el: HTMLElement): void {
    const tab = h("button", { class: "dock-tab", role: "tab", "data-testid": `dock-tab-${id}` }, title);
    tab.addEventListener("click", () => this.show(id));
    this.tabs.append(tab);
    el.hidden = true;
    this.body.append(el);
    this.panels.set(id, { id, title, el, tab });
  }

  show(id: string): void {
    this.el.hidden = false;
    for (const p of this.panels.values()) {
      p.el.hidden = p.id !== id;
      p.tab.classList.toggle("active", p.id === id);
    }
    this.current = id;
    window.dispatchEvent(new Event("resize"));
  }

  close(): void {
    const was = this.current;
    this.el.hidden = true;
    this.current = null;
    window.dispatchEvent(new Event("resize"));
    if (was) this.onClose(was);
  }
}
