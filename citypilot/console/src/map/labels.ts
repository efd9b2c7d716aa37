// Map labels from the city's own data: municipality names, street names, tram and bus
// line numbers, stop names and the river. The font (Noto Sans, from npm) is bundled at
// build and declared in the style's `font-faces`; with no `glyphs` URL MapLibre draws
// every glyph from it in the browser, so nothing is fetched from the internet.

import type {
  AddLayerObject,
  ExpressionSpecification,
  FontFacesSpecification,
  GeoJSONSource,
  Map as MapLibreMap,
} from "maplibre-gl";
import latin400 from "@fontsource/noto-sans/files/noto-sans-latin-400-normal.woff2?url";
import latinExt400 from "@fontsource/noto-sans/files/noto-sans-latin-ext-400-normal.woff2?url";
import latin600 from "@fontsource/noto-sans/files/noto-sans-latin-600-normal.woff2?url";
import latinExt600 from "@fontsource/noto-sans/files/noto-sans-latin-ext-600-normal.woff2?url";
import type { TypeLayer } from "../data";

export const FONT = "Noto Sans Regular";
export const FONT_BOLD = "Noto Sans SemiBold";
const LATIN = ["U+0000-00FF", "U+0131", "U+0152-0153", "U+02BB-02BC", "U+02C6", "U+02DA", "U+02DC", "U+2000-206F"];
const LATIN_EXT = ["U+0100-02AF", "U+1E00-1EFF", "U+2020", "U+20A0-20AB", "U+20AD-20C0", "U+2113", "U+2C60-2C7F"];
const HALO = "#0a0f16";
const MUNICIPALITY_LABELS = "labels:municipalities";

/** The bundled font files, for the style's `font-faces`. */
export function fontFaces(): FontFacesSpecification {
  const face = (latin: string, ext: string) => [
    { url: new URL(latin, location.href).href, "unicode-range": LATIN },
    { url: new URL(ext, location.href).href, "unicode-range": LATIN_EXT },
  ];
  return { [FONT]: face(latin400, latinExt400), [FONT_BOLD]: face(latin600, latinExt600) };
}

const LINE_GEOMETRY: ExpressionSpecification = [
  "match",
  ["geometry-type"],
  ["LineString", "MultiLineString"],
  true,
  false,
];
const POINT_GEOMETRY: ExpressionSpecification = ["match", ["geometry-type"], ["Point", "MultiPoint"], true, false];

/** Label layers over the city's base layers (those of ``names`` that exist). */
function baseLabelLayers(names: string[]): AddLayerObject[] {
  const out: AddLayerObject[] = [];
  if (names.includes("river")) {
    out.push({
      id: "labels:river",
      type: "symbol",
      source: "base:river",
      minzoom: 11,
      filter: ["all", LINE_GEOMETRY, ["==", ["get", "kind"], "river"]],
      layout: {
        "symbol-placement": "line",
        "text-field": ["get", "name"],
        "text-font": [FONT],
        "text-size": 13,
        "text-letter-spacing": 0.15,
        "symbol-spacing": 600,
      },
      paint: { "text-color": "#6fb3ea", "text-halo-color": HALO, "text-halo-width": 1.5 },
    });
  }
  if (names.includes("roads")) {
    out.push({
      id: "labels:roads",
      type: "symbol",
      source: "base:roads",
      minzoom: 13,
      filter: [
        "all",
        LINE_GEOMETRY,
        ["has", "name"],
        // arterials and rings from zoom 13, every street from zoom 15
        ["any", ["match", ["get", "class"], ["ring", "arterial"], true, false], [">=", ["zoom"], 15]],
      ],
      layout: {
        "symbol-placement": "line",
        "text-field": ["get", "name"],
        "text-font": [FONT],
        "text-size": ["interpolate", ["linear"], ["zoom"], 13, 10, 17, 13],
        "text-max-angle": 35,
        "symbol-spacing": 350,
      },
      paint: { "text-color": "#a9b4c2", "text-halo-color": HALO, "text-halo-width": 1.5 },
    });
  }
  if (names.includes("transit")) {
    out.push(
      {
        id: "labels:transit-lines",
        type: "symbol",
        source: "base:transit",
        minzoom: 12,
        filter: LINE_GEOMETRY,
        layout: {
          "symbol-placement": "line",
          "text-field": ["get", "name"],
          "text-font": [FONT_BOLD],
          "text-size": 11,
          "symbol-spacing": 500,
          "text-keep-upright": true,
        },
        paint: {
          "text-color": ["coalesce", ["get", "colour"], "#c8d2de"],
          "text-halo-color": HALO,
          "text-halo-width": 2,
        },
      },
      {
        id: "labels:stops",
        type: "symbol",
        source: "base:transit",
        minzoom: 15,
        filter: POINT_GEOMETRY,
        layout: {
          "text-field": ["get", "name"],
          "text-font": [FONT],
          "text-size": 11,
          "text-anchor": "top",
          "text-offset": [0, 0.6],
          "text-optional": true,
        },
        paint: { "text-color": "#c8d2de", "text-halo-color": HALO, "text-halo-width": 1.5 },
      },
    );
  }
  return out;
}

/** Add the label layers below the layer ``before`` (above the static assets). */
export function addLabelLayers(map: MapLibreMap, names: string[], before: string): void {
  if (!map.getSource(MUNICIPALITY_LABELS)) {
    map.addSource(MUNICIPALITY_LABELS, { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  }
  const layers: AddLayerObject[] = [
    ...baseLabelLayers(names),
    {
      id: "labels:municipalities",
      type: "symbol",
      source: MUNICIPALITY_LABELS,
      maxzoom: 14.5,
      layout: {
        "text-field": ["get", "name"],
        "text-font": [FONT_BOLD],
        "text-size": ["interpolate", ["linear"], ["zoom"], 9, 11, 13, 15],
        "text-transform": "uppercase",
        "text-letter-spacing": 0.08,
        "text-padding": 8,
      },
      paint: { "text-color": "#8ea5c2", "text-halo-color": HALO, "text-halo-width": 2, "text-opacity": 0.85 },
    },
  ];
  for (const layer of layers) if (!map.getLayer(layer.id)) map.addLayer(layer, before);
}

/** Place the municipality names at the municipalities' representative points. */
export function setMunicipalityLabels(map: MapLibreMap, layer: TypeLayer | undefined): void {
  const source = map.getSource(MUNICIPALITY_LABELS) as GeoJSONSource | undefined;
  if (!source || !layer) return;
  const features = [];
  for (let i = 0; i < layer.ids.length; i++) {
    if (!layer.ids[i] || !Number.isFinite(layer.lon[i])) continue;
    features.push({
      type: "Feature" as const,
      geometry: { type: "Point" as const, coordinates: [layer.lon[i], layer.lat[i]] },
      properties: { name: layer.name(i) },
    });
  }
  void source.setData({ type: "FeatureCollection", features });
}
