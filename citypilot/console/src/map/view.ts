// The MapLibre map itself: created with the bundled worker, an empty dark style and the
// city's layers; every request to CityPilot carries the bearer token.

import * as maplibregl from "maplibre-gl";
import type { Map as MapLibreMap } from "maplibre-gl";
import "maplibre-gl/dist/maplibre-gl.css";
import workerUrl from "maplibre-gl/dist/maplibre-gl-worker.mjs?url";
import { addCityLayers, baseStyle } from "./style";

maplibregl.setWorkerUrl(workerUrl);

/** Pixel ratio the map draws at where WebGL is software-rendered (no GPU: a headless
 * browser, a thin client): a quarter of the pixels to fill at each repaint, which is where
 * such a renderer spends its time; the browser scales the canvas up. ``?mapQuality=full``
 * in the console's URL draws every pixel anyway. */
export const SOFTWARE_PIXEL_RATIO = 0.5;
const SOFTWARE_RENDERERS = /swiftshader|llvmpipe|softpipe|software|basic render/i;

/** The WebGL renderer's name, and whether it runs on the CPU. */
export function webglRenderer(): { name: string; software: boolean } {
  const gl = document.createElement("canvas").getContext("webgl2");
  if (!gl) return { name: "none", software: true };
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  return { name, software: SOFTWARE_RENDERERS.test(name) };
}

/** The pixel ratio to draw the map at on this machine (see SOFTWARE_PIXEL_RATIO). */
export function mapPixelRatio(): number {
  const full = window.devicePixelRatio || 1;
  if (new URLSearchParams(location.search).get("mapQuality") === "full") return full;
  return webglRenderer().software ? Math.min(full, SOFTWARE_PIXEL_RATIO) : full;
}

/** Create the map in ``container``; resolves once its (empty) style is loaded. */
export function createMap(container: HTMLElement, token: () => string | null): Promise<MapLibreMap> {
  const map = new maplibregl.Map({
    container,
    pixelRatio: mapPixelRatio(),
    style: baseStyle(),
    center: [0, 0],
    zoom: 1,
    attributionControl: false,
    dragRotate: false,
    pitchWithRotate: false,
    touchPitch: false,
    maxPitch: 0,
    fadeDuration: 0,
    transformRequest: (url) => {
      const same = url.startsWith(location.origin + "/api/") || url.startsWith(location.origin + "/ngsi-ld/");
      const t = token();
      return same && t ? { url, headers: { Authorization: `Bearer ${t}` } } : { url };
    },
  });
  map.touchZoomRotate.disableRotation();
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "bottom-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
  return new Promise((resolve) => map.once("load", () => resolve(map)));
}

/** Add the city's background layers, fetched by the map's worker from CityPilot; returns
 * their source ids. */
export function addBaseLayers(map: MapLibreMap, names: string[]): string[] {
  addCityLayers(map, names, (name) => new URL(`/api/v1/map/layers/${encodeURIComponent(name)}`, location.href).href);
  return names.map((name) => `base:${name}`);
}

/** Resolves at the next "idle" (everything loaded and drawn), or after ``maxMs``: under a
 * heavy live load the map may never be completely still. */
export function idle(map: MapLibreMap, maxMs = 20_000): Promise<void> {
  return new Promise((resolve) => {
    const timer = window.setTimeout(resolve, maxMs);
    map.once("idle", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
