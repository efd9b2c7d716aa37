// The base map: a dark background and the city's own GeoJSON layers (municipalities,
// zones, river, roads, transit lines, buildings). No tiles or sprites, and the labels'
// font is bundled (labels.ts): every source is a GeoJSON document served by CityPilot,
// so nothing comes from the internet.

import type {
  AddLayerObject,
  ExpressionSpecification,
  Map as MapLibreMap,
  StyleSpecification,
} from "maplibre-gl";
import { fontFaces } from "./labels";

export const BACKGROUND = "#0a0f16";
/** The ground inside the metropole (its municipalities' fill). */
const CITY_GROUND = "#0f1721";
/** From this zoom on the view is inside the metropole: the background takes the
 * municipalities' colour and their fill is not drawn (a full-screen pass less on every
 * frame, which software WebGL pays in full). */
const CITY_GROUND_ZOOM = 12;

export function baseStyle(): StyleSpecification {
  return {
    version: 8,
    "font-faces": fontFaces(),
    sources: {},
    layers: [
      {
        id: "background",
        type: "background",
        paint: { "background-color": ["step", ["zoom"], BACKGROUND, CITY_GROUND_ZOOM, CITY_GROUND] },
      },
    ],
  };
}

const POLY: ExpressionSpecification = ["match", ["geometry-type"], ["Polygon", "MultiPolygon"], true, false];
const LINE: ExpressionSpecification = [
  "match",
  ["geometry-type"],
  ["LineString", "MultiLineString"],
  true,
  false,
];
const MAJOR: ExpressionSpecification = ["match", ["get", "class"], ["ring", "arterial"], true, false];
const POINT: ExpressionSpecification = ["match", ["geometry-type"], ["Point", "MultiPoint"], true, false];

/** Known layers, drawn bottom to top; others are drawn after them with a neutral style. */
const ORDER = ["municipalities", "zones", "river", "roads", "transit", "buildings"];

/** Style layers for one city layer, by its name. */
function styleLayers(name: string, source: string): AddLayerObject[] {
  const id = (suffix: string) => `base:${name}:${suffix}`;
  switch (name) {
    case "municipalities":
      return [
        {
          id: id("fill"),
          type: "fill",
          source,
          maxzoom: CITY_GROUND_ZOOM,
          filter: POLY,
          paint: { "fill-color": CITY_GROUND },
        },
      ];
    case "zones":
      // Planning zones only from the district scale on: at city scale they would cover
      // the whole map for little information (and cost every frame a full-screen fill).
      return [
        {
          id: id("fill"),
          type: "fill",
          source,
          minzoom: 13,
          filter: POLY,
          paint: {
            // opaque (the colours they had at 0.8 over the city ground): MapLibre draws
            // opaque fills front to back with a depth test, so what they cover is skipped
            "fill-color": [
              "match",
              ["get", "category"],
              "park",
              "#10231c",
              "floodProne",
              "#0d202f",
              "industrial",
              "#191822",
              "commercial",
              "#181c23",
              "centre",
              "#1a1b1b",
              "#111923",
            ],
          },
        },
      ];
    case "river":
      return [
        {
          id: id("fill"),
          type: "fill",
          source,
          filter: POLY,
          paint: {
            "fill-color": ["match", ["get", "kind"], "floodProne", "#0f3350", "#1d5f96"],
            "fill-opacity": ["match", ["get", "kind"], "floodProne", 0.35, 0.9],
          },
        },
        {
          id: id("line"),
          type: "line",
          source,
          filter: LINE,
          layout: { "line-cap": "round", "line-join": "round" },
          paint: {
            "line-color": "#2b8ad6",
            "line-width": ["interpolate", ["exponential", 1.6], ["zoom"], 10, 2.5, 16, 28],
          },
        },
      ];
    case "roads":
      // One layer for every street: ring roads and arterials at every scale, local streets
      // from zoom 12 on (each layer costs draw calls on every tile of every frame, which a
      // software-rendered map pays in full).
      return [
        {
          id: id("line"),
          type: "line",
          source,
          filter: ["all", LINE, ["any", MAJOR, [">=", ["zoom"], 12]]],
          layout: { "line-cap": "round", "line-join": "round" },
          paint: {
            "line-color": ["match", ["get", "class"], "ring", "#5b6b80", "arterial", "#3f4d60", "#273241"],
            "line-width": [
              "interpolate",
              ["exponential", 1.5],
              ["zoom"],
              10,
              ["match", ["get", "class"], "ring", 2, "arterial", 1.2, 0.3],
              12,
              ["match", ["get", "class"], "ring", 3.2, "arterial", 2, 0.6],
              16,
              ["match", ["get", "class"], "ring", 12, "arterial", 8, 4],
            ],
          },
        },
      ];
    case "transit":
      return [
        {
          id: id("line"),
          type: "line",
          source,
          filter: LINE,
          paint: {
            "line-color": ["coalesce", ["get", "colour"], "#8899aa"],
            "line-width": ["interpolate", ["linear"], ["zoom"], 10, 1, 16, 3],
            "line-opacity": 0.45,
          },
        },
        {
          id: id("stops"),
          type: "circle",
          source,
          filter: POINT,
          minzoom: 14,
          paint: {
            "circle-radius": 2.5,
            "circle-color": BACKGROUND,
            "circle-stroke-color": "#8899aa",
            "circle-stroke-width": 1,
          },
        },
      ];
    case "buildings":
      // From the district scale on: at city scale a building is a pixel or two, and every
      // frame would fill (and outline) all of them.
      return [
        {
          id: id("fill"),
          type: "fill",
          source,
          minzoom: 13,
          filter: POLY,
          paint: { "fill-color": "#2b3140", "fill-outline-color": "#465066" },
        },
      ];
    default:
      return [
        {
          id: id("fill"),
          type: "fill",
          source,
          filter: POLY,
          paint: { "fill-color": "#1c2430", "fill-opacity": 0.5 },
        },
        { id: id("line"), type: "line", source, filter: LINE, paint: { "line-color": "#3a475a" } },
        {
          id: id("point"),
          type: "circle",
          source,
          filter: POINT,
          paint: { "circle-radius": 2, "circle-color": "#6b7a90" },
        },
      ];
  }
}

/** Outlines of municipalities go above roads and buildings so borders stay legible. */
function outlineLayers(names: string[]): AddLayerObject[] {
  if (!names.includes("municipalities")) return [];
  return [
    {
      id: "base:municipalities:outline",
      type: "line",
      source: "base:municipalities",
      filter: POLY,
      paint: {
        "line-color": "#6d86a6",
        "line-width": ["interpolate", ["linear"], ["zoom"], 10, 0.8, 16, 2],
        "line-dasharray": [3, 2],
        "line-opacity": 0.7,
      },
    },
  ];
}

/** Add the city's layers to the map; ``urlOf`` gives the GeoJSON URL of a layer. */
export function addCityLayers(map: MapLibreMap, names: string[], urlOf: (name: string) => string): void {
  const sorted = [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  for (const name of sorted) {
    const source = `base:${name}`;
    if (!map.getSource(source)) map.addSource(source, { type: "geojson", data: urlOf(name) });
    for (const layer of styleLayers(name, source)) if (!map.getLayer(layer.id)) map.addLayer(layer);
  }
  for (const layer of outlineLayers(names)) if (!map.getLayer(layer.id)) map.addLayer(layer);
}

function rank(name: string): number {
  const i = ORDER.indexOf(name);
  return i < 0 ? ORDER.length : i;
}
