/**
 * One SVG per scenario: arrivals, backlog (ready + reserved) and pods over time, one line per
 * policy (first seed). Plain SVG written by hand: three polylines per panel need no library.
 */
import type { Trace } from './model.js';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
const WIDTH = 960;
const PANEL = 170;
const MARGIN = { left: 64, right: 150, top: 34, gap: 36 };

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function panel(title: string, top: number, duration: number, series: { name: string; t: Float64Array; y: Float64Array; color: string }[]): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  let max = 0;
  for (const s of series) for (const v of s.y) if (v > max) max = v;
  const yMax = niceMax(max);
  const x = (t: number): number => MARGIN.left + (t / duration) * plotW;
  const y = (v: number): number => top + PANEL - (v / yMax) * PANEL;
  const out: string[] = [];
  out.push(`<text x="${MARGIN.left}" y="${top - 8}" font-size="13" font-weight="bold">${escapeXml(title)}</text>`);
  out.push(`<rect x="${MARGIN.left}" y="${top}" width="${plotW}" height="${PANEL}" fill="none" stroke="#999"/>`);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`);
    out.push(`<text x="${MARGIN.left - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end">${+v.toFixed(2)}</text>`);
  }
  for (let i = 0; i <= 6; i++) {
    const t = (duration * i) / 6;
    out.push(`<text x="${x(t)}" y="${top + PANEL + 14}" font-size="11" text-anchor="middle">${Math.round(t)} s</text>`);
  }
  series.forEach((s, i) => {
    const pts: string[] = [];
    for (let k = 0; k < s.t.length; k++) pts.push(`${x(s.t[k]!).toFixed(1)},${y(s.y[k]!).toFixed(1)}`);
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.4" points="${pts.join(' ')}"/>`);
    out.push(`<text x="${MARGIN.left + plotW + 10}" y="${top + 14 + i * 16}" font-size="12" fill="${s.color}">${escapeXml(s.name)}</text>`);
  });
  return out.join('\n');
}

/** Renders the chart of one scenario; `traces` are in the order of `policies`. */
export function renderChart(title: string, duration: number, policies: readonly string[], traces: readonly Trace[]): string {
  const first = traces[0];
  const height = MARGIN.top + 3 * (PANEL + MARGIN.gap) + 10;
  const tops = [0, 1, 2].map((i) => MARGIN.top + 16 + i * (PANEL + MARGIN.gap));
  const color = (i: number): string => COLORS[i % COLORS.length]!;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height + 16}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${MARGIN.left}" y="20" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    first ? panel('arrivals (tasks/s)', tops[0]!, duration, [{ name: 'arrivals', t: first.t, y: first.arrivals, color: '#555' }]) : '',
    panel(
      'backlog: ready + reserved (tasks)',
      tops[1]!,
      duration,
      traces.map((tr, i) => ({ name: policies[i]!, t: tr.t, y: tr.backlog, color: color(i) })),
    ),
    panel(
      'pods (starting, running, draining, terminating)',
      tops[2]!,
      duration,
      traces.map((tr, i) => ({ name: policies[i]!, t: tr.t, y: tr.pods, color: color(i) })),
    ),
    '</svg>',
  ];
  return parts.join('\n');
}
