// The layers panel: one toggle per silo with its asset count and how many are in alert,
// the legend of state colours, and the legend of every other symbol the map draws.

import type { CityData } from "../data";
import { ALERT, INACTIVE, SILOS, STATE_COLOURS, type Silo, WARN, BUSY } from "../silos";
import { h } from "./dom";
import { panel } from "./layout";

/** The map's other symbols, drawn by CSS to look like their map counterparts. */
const MAP_SYMBOLS: [string, string][] = [
  ["alert", "asset in alert"],
  ["cluster", "group of assets (zoom in)"],
  ["selected", "selected asset"],
  ["transit", "tram / bus line"],
  ["stop", "stop"],
  ["river", "river"],
  ["flood", "flood-prone zone"],
  ["border", "municipality border"],
  ["major-road", "main road"],
  ["incident", "open incident and its area"],
  ["unit-route", "route of a dispatched unit"],
  ["closure", "closed road"],
];

interface Row {
  silo: Silo;
  input: HTMLInputElement;
  count: HTMLElement;
  alerts: HTMLElement;
}

export class LayersPanel {
  readonly el: HTMLElement;
  private rows: Row[] = [];
  onToggle: (silo: string, visible: boolean) => void = () => {};

  constructor(private data: CityData) {
    const list = h("ul", { class: "layer-list" });
    for (const silo of SILOS) {
      const input = h("input", {
        type: "checkbox",
        checked: silo.visible,
        "data-testid": `layer-toggle-${silo.id}`,
      });
      input.addEventListener("change", () => this.onToggle(silo.id, input.checked));
      const count = h("span", { class: "layer-count", "data-testid": `layer-count-${silo.id}` }, "…");
      const alerts = h("span", { class: "layer-alerts", "data-testid": `layer-alerts-${silo.id}` });
      list.append(
        h(
          "li",
          { class: "layer-row" },
          h(
            "label",
            {},
            input,
            h("span", { class: "swatch", style: `background:${silo.colour}` }),
            h("span", { class: "layer-name" }, silo.label),
          ),
          alerts,
          count,
        ),
      );
      this.rows.push({ silo, input, count, alerts });
    }
    const legend = h(
      "div",
      { class: "legend" },
      ...[
        [ALERT, "alert / fault / late"],
        [WARN, "warning"],
        [BUSY, "occupied / engaged"],
        [INACTIVE, "off / inactive"],
      ].map(([code, label]) =>
        h(
          "span",
          { class: "legend-item" },
          h("span", { class: "swatch round", style: `background:${STATE_COLOURS[code as 1]}` }),
          label as string,
        ),
      ),
    );
    const mapLegend = h(
      "div",
      { class: "legend map-legend", "data-testid": "map-legend" },
      ...MAP_SYMBOLS.map(([kind, label]) =>
        h("span", { class: "legend-item", "data-symbol": kind }, h("span", { class: `symbol symbol-${kind}` }), label),
      ),
    );
    this.el = panel("Layers", "layers-panel", list, legend, mapLegend);
  }

  /** Refresh counts (cheap: reads the per-type counters and state codes). */
  update(): void {
    for (const row of this.rows) {
      let n = 0;
      let bad = 0;
      for (const t of row.silo.types) {
        const layer = this.data.layers.get(t);
        if (!layer) continue;
        n += layer.count;
        for (let i = 0; i < layer.codes.length; i++) if (layer.codes[i] === ALERT && layer.ids[i]) bad++;
      }
      row.count.textContent = n.toLocaleString("en-GB");
      row.alerts.textContent = bad ? `${bad.toLocaleString("en-GB")} ⚠` : "";
      row.alerts.title = bad ? `${bad} in alert` : "";
    }
  }

  visible(silo: string): boolean {
    return this.rows.find((r) => r.silo.id === silo)?.input.checked ?? false;
  }
}
