// A small time-series chart (uPlot) for one numeric attribute: the last 24 h of history,
// bucketed by the server, plus live points appended as they arrive.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { formatNumber } from "../format";

function formatHour(t: number): string {
  return new Date(t).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });
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
  ) {
    this.el = document.createElement("div");
    this.el.className = "chart";
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
          // A flat series still gets a readable band around its value.
          range: (_u, min, max) => (min === max ? [min - 1, max + 1] : [min, max]),
        },
      },
      axes: [
        {
          ...AXIS,
          size: 26,
          font: "10px system-ui, sans-serif",
          // 24-hour clock, as control rooms read it.
          values: (_u, ticks) => ticks.map((t) => formatHour(t * 1000)),
        },
        {
          ...AXIS,
          size: 44,
          font: "10px system-ui, sans-serif",
          values: (_u, ticks) => ticks.map((t) => formatNumber(t)),
        },
      ],
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
