// Search any asset by id, name or street. Ids and names are matched at once in the
// console's own column store; streets (addresses are not in the map columns) are asked of
// the server with an NGSI-LD regular-expression query, and merged in when they come.

import type { Api } from "../api";
import type { CityData, TypeLayer } from "../data";
import { humanType } from "../format";
import { ASSET_TYPES, siloOf } from "../silos";
import { h } from "./dom";

interface Hit {
  id: string;
  type: string;
  name: string;
  where?: string;
}

const MAX_HITS = 12;
const SERVER_DELAY_MS = 250;

/** Lower case without accents, so "cafe" finds "Café". */
export function fold(s: string): string {
  return s.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\"]/g, "\\$&");
}

export class SearchBox {
  readonly el: HTMLElement;
  readonly input: HTMLInputElement;
  private results: HTMLElement;
  private hits: Hit[] = [];
  private active = 0;
  private timer: number | undefined;
  private seq = 0;
  private folded = new WeakMap<TypeLayer, string[]>();
  onSelect: (id: string) => void = () => {};

  constructor(
    private api: Api,
    private data: CityData,
  ) {
    this.input = h("input", {
      type: "search",
      placeholder: "Search an asset: id, name or street   ( / )",
      "aria-label": "Search assets",
      autocomplete: "off",
      spellcheck: "false",
      "data-testid": "search-input",
    });
    this.results = h("ul", { class: "search-results", role: "listbox", "data-testid": "search-results", hidden: true });
    this.el = h("div", { class: "search" }, this.input, this.results);
    this.input.addEventListener("input", () => this.search(this.input.value));
    this.input.addEventListener("keydown", (ev) => this.key(ev));
    this.input.addEventListener("blur", () => setTimeout(() => (this.results.hidden = true), 150));
    this.input.addEventListener("focus", () => (this.results.hidden = !this.hits.length));
  }

  private key(ev: KeyboardEvent): void {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      const n = this.hits.length;
      if (n) this.active = (this.active + (ev.key === "ArrowDown" ? 1 : n - 1)) % n;
      this.render();
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      const hit = this.hits[this.active];
      if (hit) this.choose(hit);
      else if (/^urn:ngsi-ld:/.test(this.input.value.trim())) this.onSelect(this.input.value.trim());
    } else if (ev.key === "Escape") {
      this.input.value = "";
      this.hits = [];
      this.render();
      this.input.blur();
    }
  }

  private choose(hit: Hit): void {
    this.results.hidden = true;
    this.input.blur();
    this.onSelect(hit.id);
  }

  search(text: string): void {
    const q = text.trim();
    const seq = ++this.seq;
    clearTimeout(this.timer);
    this.hits = q.length >= 2 ? this.local(q) : [];
    this.active = 0;
    this.render();
    if (q.length >= 3 && this.hits.length < MAX_HITS) {
      this.timer = window.setTimeout(() => void this.remote(q, seq), SERVER_DELAY_MS);
    }
  }

  /** Matches among loaded assets: exact id first, then id or name containing the text. */
  private local(q: string): Hit[] {
    const needle = fold(q);
    const out: Hit[] = [];
    const exact = this.data.locate(q);
    if (exact) out.push(this.hit(exact.layer, exact.index));
    for (const layer of this.data.layers.values()) {
      if (!siloOf(layer.type)) continue;
      const names = this.foldedNames(layer);
      for (let i = 0; i < layer.ids.length && out.length < MAX_HITS; i++) {
        const id = layer.ids[i];
        if (!id || (exact && exact.layer === layer && exact.index === i)) continue;
        if (names[i].includes(needle) || fold(id).includes(needle)) out.push(this.hit(layer, i));
      }
      if (out.length >= MAX_HITS) break;
    }
    return out;
  }

  private foldedNames(layer: TypeLayer): string[] {
    let names = this.folded.get(layer);
    if (!names || names.length !== layer.ids.length) {
      names = layer.ids.map((_, i) => fold(layer.name(i)));
      this.folded.set(layer, names);
    }
    return names;
  }

  private hit(layer: TypeLayer, i: number): Hit {
    return { id: layer.ids[i]!, type: layer.type, name: layer.name(i) };
  }

  /** Streets: addresses match on the server. */
  private async remote(q: string, seq: number): Promise<void> {
    try {
      const found = await this.api.search(ASSET_TYPES, `(?i)${escapeRegex(q)}`, MAX_HITS);
      if (seq !== this.seq) return;
      const seen = new Set(this.hits.map((x) => x.id));
      for (const e of found) {
        if (seen.has(e.id) || this.hits.length >= MAX_HITS) continue;
        const addr = e.address as { streetAddress?: string } | undefined;
        this.hits.push({
          id: e.id,
          type: e.type,
          name: typeof e.name === "string" ? e.name : e.id,
          where: addr?.streetAddress,
        });
      }
      this.render();
    } catch {
      /* the local hits stay */
    }
  }

  private render(): void {
    this.results.replaceChildren(
      ...this.hits.map((hit, i) => {
        const li = h(
          "li",
          {
            class: i === this.active ? "active" : "",
            role: "option",
            "data-testid": "search-result",
            "data-id": hit.id,
          },
          h("span", { class: "swatch", style: `background:${siloOf(hit.type)?.colour ?? "#888"}` }),
          h("span", { class: "search-name" }, hit.name),
          h("span", { class: "search-meta" }, hit.where ? `${hit.where} · ${humanType(hit.type)}` : humanType(hit.type)),
        );
        li.addEventListener("mousedown", (ev) => {
          ev.preventDefault();
          this.choose(hit);
        });
        return li;
      }),
    );
    if (this.input.value.trim().length >= 2 && !this.hits.length) {
      this.results.append(h("li", { class: "empty" }, "No asset found"));
    }
    this.results.hidden = document.activeElement !== this.input || !this.input.value.trim();
  }
}
