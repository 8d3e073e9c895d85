// The older part of a chart's window, from the server's history: `GET history?ch=A&
// from=T0&to=T1&points=P` answers a long range in at most P envelopes (per time bucket:
// first, last, and each numeric field's min and max) with `"downsampled": true` when it
// left anything out. An answer without `downsampled` is taken as exact history and
// only its envelopes inside [from, to) are used, so an older server that ignores the
// range costs nothing but a request.

import type { Envelope } from "../sync";

export interface RangeAnswer {
  msgs: Envelope[];
  /** True when the server thinned the range (zooming in can fetch more). */
  downsampled: boolean;
  epoch: string;
}

export async function fetchRange(
  endpoint: (path: string, params: URLSearchParams) => string,
  token: string, ch: string, from: number | null, to: number | null, points: number,
): Promise<RangeAnswer | null> {
  const params = new URLSearchParams({ ch, points: String(Math.max(4, Math.round(points))) });
  if (from !== null) params.set("from", String(from));
  if (to !== null) params.set("to", String(to));
  const res = await fetch(endpoint("history", params), { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
  if (!res.ok) return null;
  const body = (await res.json()) as { msgs?: Envelope[]; downsampled?: boolean; epoch?: string };
  const msgs = (body.msgs ?? []).filter((m) => (from === null || m.ts >= from) && (to === null || m.ts < to));
  return { msgs, downsampled: body.downsampled === true, epoch: String(body.epoch ?? "") };
}

/** The parts of [a, b] that overlap any of `ranges`. */
export function overlaps(ranges: [number, number][], a: number, b: number): [number, number][] {
  const out: [number, number][] = [];
  for (const [lo, hi] of ranges) {
    const x0 = Math.max(lo, a);
    const x1 = Math.min(hi, b);
    if (x1 > x0) out.push([x0, x1]);
  }
  return out;
}

/** [a, b] without [c, d]: zero, one or two ranges. */
export function cut(a: number, b: number, c: number, d: number): [number, number][] {
  const out: [number, number][] = [];
  if (c > a) out.push([a, Math.min(b, c)]);
  if (d < b) out.push([Math.max(a, d), b]);
  return out.filter(([x, y]) => y > x);
}
