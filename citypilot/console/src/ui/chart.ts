// A small time-series chart (uPlot) for one numeric attribute: the last 24 h of history,
// bucketed by the server, plus live points appended as they arrive, with the limits that
// give the values their meaning (an alert level, a legal limit) drawn across it.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { formatNumber } from "../format";

function formatHour(t: number): string {
  return new Date(t).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });
}

/** A horizontal line across the chart: a level the values are judged against. */
export interface Threshold {
  value: number;
  label: string;
  colour: string;
}

/** Time steps the x axis may use (seconds): at most one label per ~55 px. */
const TIME_STEPS = [900, 1800, 3600, 2 * 3600, 3 * 3600, 4 * 3600, 6 * 3600, 12 * 3600];

function drawThresholds(u: uPlot, thresholds: Threshold[]): void {
  const ctx = u.ctx;
  const { left, width } = u.bbox;
  ctx.save();
  ctx.font = `${Math.round(10 * devicePixelRatio)}px system-ui, sans-serif`;
  ctx.textAlign = "right";
  ctx.textBaseline = "bottom";
  for (const t of thresholds) {
    const y = Math.round(u.valToPos(t.value, "y", true));
    ctx.strokeStyle = t.colour;
    ctx.fillStyle = t.colour;
    ctx.lineWidth = devicePixelRatio;
    ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + width, y);
    ctx.stroke();
    ctx.fillText(t.label, left + width - 4 * devicePixelRatio, y - 2 * devicePixelRatio);
  }
  ctx.restore();
}

const AXIS = { stroke: "#8a97a8", grid: { stroke: "#1d2733", width: 1 }, ticks: { stroke: "#1d2733" } };
const MAX_POINTS = 2000;

export class Sparkline {
  readonly el: HTMLElement;
  private plot: uPlot;
  private xs: number[];
  private ys: (number | null)[];

  /** ``window`` is the [from, to] time span (epoch ms) the x axis always shows. */
  constructor(
    title: string,
    unit: string,
    colour: string,
    points: [number, number][],
    width: number,
    window: [number, number],
    thresholds: Threshold[] = [],
  ) {
    this.el = document.createElement("div");
    this.el.className = "chart";
    if (thresholds.length) this.el.dataset.thresholds = thresholds.map((t) => t.label).join("|");
    this.xs = points.map((p) => p[0] / 1000);
    this.ys = points.map((p) => p[1]);
    const opts: uPlot.Options = {
      title: unit ? `${title} (${unit})` : title,
      width,
      height: 110,
      legend: { show: false },
      cursor: { y: false, points: { size: 5 } },
      scales: {
        x: {
          time: true,
          range: (_u, min, max) => [Math.min(min ?? Infinity, window[0] / 1000), Math.max(max ?? -Infinity, window[1] / 1000)],
        },
        y: {
          // Limits stay in view, and a flat series still gets a readable band.
          range: (_u, min, max) => {
            const lo = Math.min(min, ...thresholds.map((t) => t.value));
            const hi = Math.max(max, ...thresholds.map((t) => t.value));
            const pad = lo === hi ? 1 : (hi - lo) * 0.08;
            return [lo - pad, hi + pad];
          },
        },
      },
      axes: [
        {
          ...AXIS,
          size: 26,
          space: 55,
          incrs: TIME_STEPS,
          font: "10px system-ui, sans-serif",
          // 24-hour clock, as control rooms read it.
          values: (_u, ticks) => ticks.map((t) => formatHour(t * 1000)),
        },
        {
          ...AXIS,
          size: 44,
          space: 22,
          font: "10px system-ui, sans-serif",
          values: (_u, ticks) => ticks.map((t) => formatNumber(t)),
        },
      ],
      hooks: thresholds.length ? { draw: [(u) => drawThresholds(u, thresholds)] } : {},
      series: [
        {},
        { stroke: colour, width: 1.5, fill: `${colour}22`, points: { show: this.xs.length < 3 }, spanGaps: true },
      ],
    };
    this.plot = new uPlot(opts, [this.xs, this.ys], this.el);
  }

  /** Append a live value (time in epoch ms). */
  push(t: number, value: number): void {
    const x = t / 1000;
    if (this.xs.length && x <= this.xs[this.xs.length - 1]) return;
    this.xs.push(x);
    this.ys.push(value);
    if (this.xs.length > MAX_POINTS) {
      this.xs.shift();
      this.ys.shift();
    }
    this.plot.setData([this.xs, this.ys]);
  }

  resize(width: number): void {
    this.plot.setSize({ width, height: 110 });
  }

  destroy(): void {
    this.plot.destroy();
  }
}
