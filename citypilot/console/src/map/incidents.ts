// The incident layers of the map: every open incident (a diamond coloured by severity,
// its affected area), the roads closed, and the routes of the units sent to the incident
// the operator has open. Drawn under the vehicles, so a unit is seen driving its route.

import type { GeoJSONSource, Map as MapLibreMap } from "maplibre-gl";
import type { Closure, Incident } from "../api";
import { featureCollection } from "./assets";

/** Fill colour of an incident by severity. */
export const SEVERITY_COLOURS: Record<string, string> = {
  critical: "#ff2a2a",
  major: "#ff8a00",
  moderate: "#ffd000",
  minor: "#9fb3c8",
};

const INCIDENTS = "ops:incidents";
const CLOSURES = "ops:closures";
const ROUTES = "ops:routes";

function point(i: Incident): GeoJSON.Feature | null {
  const c = i.location?.coordinates;
  if (!c) return null;
  return {
    type: "Feature",
    geometry: { type: "Point", coordinates: c },
    properties: { id: i.id, colour: SEVERITY_COLOURS[i.severity] ?? "#ff8a00" },
  };
}

function area(i: Incident): GeoJSON.Feature | null {
  if (!i.affectedArea) return null;
  return {
    type: "Feature",
    geometry: i.affectedArea as GeoJSON.Geometry,
    properties: { id: i.id, colour: SEVERITY_COLOURS[i.severity] ?? "#ff8a00" },
  };
}

export class IncidentLayers {
  private drawn = { incidents: 0, closures: 0, routes: 0 };

  constructor(
    private map: MapLibreMap,
    before: string,
  ) {
    for (const id of [INCIDENTS, CLOSURES, ROUTES]) map.addSource(id, { type: "geojson", data: featureCollection([]) });
    map.addLayer(
      {
        id: "incidents:areas",
        type: "fill",
        source: INCIDENTS,
        filter: ["==", ["geometry-type"], "Polygon"],
        paint: { "fill-color": ["get", "colour"], "fill-opacity": 0.18, "fill-outline-color": ["get", "colour"] },
      },
      before,
    );
    map.addLayer(
      {
        id: "closures:lines",
        type: "line",
        source: CLOSURES,
        layout: { "line-cap": "round" },
        paint: { "line-color": "#ff2a6d", "line-width": ["interpolate", ["linear"], ["zoom"], 11, 2.5, 17, 7] },
      },
      before,
    );
    map.addLayer(
      {
        id: "routes:lines",
        type: "line",
        source: ROUTES,
        paint: {
          "line-color": "#5cff9d",
          "line-width": ["interpolate", ["linear"], ["zoom"], 11, 2, 17, 5],
          "line-dasharray": [2, 1.2],
        },
      },
      before,
    );
    map.addLayer(
      {
        id: "incidents:points",
        type: "circle",
        source: INCIDENTS,
        filter: ["==", ["geometry-type"], "Point"],
        paint: {
          "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 6, 17, 12],
          "circle-color": ["get", "colour"],
          "circle-stroke-color": "#ffffff",
          "circle-stroke-width": 2,
        },
      },
      before,
    );
  }

  /** Layers a click may hit (an incident marker). */
  clickable(): string[] {
    return ["incidents:points"];
  }

  /** Draw the open incidents. */
  setIncidents(incidents: Incident[]): void {
    const features: GeoJSON.Feature[] = [];
    for (const i of incidents) {
      const a = area(i);
      const p = point(i);
      if (a) features.push(a);
      if (p) features.push(p);
    }
    this.drawn.incidents = incidents.length;
    (this.map.getSource(INCIDENTS) as GeoJSONSource).setData(featureCollection(features));
  }

  /** Draw the closures in force. */
  setClosures(closures: Closure[]): void {
    const features: GeoJSON.Feature[] = closures
      .filter((c) => c.geometry && c.status !== "ended")
      .map((c) => ({ type: "Feature", geometry: c.geometry as GeoJSON.Geometry, properties: { id: c.id } }));
    this.drawn.closures = features.length;
    (this.map.getSource(CLOSURES) as GeoJSONSource).setData(featureCollection(features));
  }

  /** Draw the routes of the units assigned to one incident (none: clear them). */
  setRoutes(incident: Incident | null): void {
    const features: GeoJSON.Feature[] = [];
    for (const [unit, job] of Object.entries(incident?.assignments ?? {})) {
      if (job.route?.coordinates?.length) {
        features.push({ type: "Feature", geometry: job.route as GeoJSON.Geometry, properties: { unit } });
      }
    }
    this.drawn.routes = features.length;
    (this.map.getSource(ROUTES) as GeoJSONSource).setData(featureCollection(features));
  }

  /** How many incidents, closures and unit routes the map was given (for tests). */
  counts(): { incidents: number; closures: number; routes: number } {
    return { ...this.drawn };
  }
}
