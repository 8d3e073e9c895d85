// The shared test vectors (tests/vectors/*.json), also read by tests/core/test_vectors.py.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ChannelPositions, backoffCeiling, backoffDelay, decodeCursor, encodeCursor } from "../src/sync";
import type { Envelope, Gap, Positions, Start } from "../src/sync";

const load = (name: string) =>
  JSON.parse(readFileSync(new URL(`../../tests/vectors/${name}.json`, import.meta.url), "utf8"));

const env = (ch: string, seq: number): Envelope => ({ ch, seq, ts: 1_700_000_000 + seq, data: { v: seq } });

describe("cursor", () => {
  const v = load("cursor");
  it.each(v.roundtrip as { positions: Positions; cursor: string }[])("encodes $cursor", (c) => {
    expect(encodeCursor(c.positions)).toBe(c.cursor);
    expect(decodeCursor(c.cursor)).toEqual(c.positions);
  });
  it.each(v.invalid as string[])("refuses %s", (bad) => {
    expect(() => decodeCursor(bad)).toThrow(/cursor/);
  });
});

describe("backoff", () => {
  const v = load("backoff");
  it.each(v.cases as { attempt: number; max: number }[])("attempt $attempt is at most $max s", (c) => {
    expect(backoffCeiling(c.attempt, v.base, v.cap)).toBe(c.max);
    expect(backoffDelay(c.attempt, 0, v.base, v.cap)).toBe(0);
    expect(backoffDelay(c.attempt, 0.999999, v.base, v.cap)).toBeLessThan(c.max);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(c.attempt);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(c.max);
    }
  });
  it("is jittered, not fixed", () => {
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(6)));
    expect(seen.size).toBeGreaterThan(40);
  });
});

interface ReplayCase {
  name: string;
  start: Start;
  epoch: string;
  first: number;
  top: number;
  plan: { recovered: boolean; after: number | null; last: number };
  replayed: number[];
  client_gap: boolean;
  client_seq: number;
}

describe("resync after the server's replay plan", () => {
  const v = load("replay");
  it.each(v.cases as ReplayCase[])("$name", (c) => {
    const gaps: Gap[] = [];
    const initial: Start = c.start && "since" in c.start ? { backfill: 100 } : c.start;
    const sync = new ChannelPositions({ a: initial });
    sync.onGap = (g) => gaps.push(g);
    if (c.start && "since" in c.start) {
      sync.positions.a = [c.start.epoch, c.start.since];
      expect(sync.subscribeOp().ch.a).toEqual({ since: c.start.since, epoch: c.start.epoch });
    }
    sync.handleControl({ op: "subscribed", ch: "a", epoch: c.epoch, seq: c.top, recovered: c.plan.recovered });
    const accepted = c.replayed.filter((s) => sync.accept(env("a", s)));
    expect(accepted).toEqual(c.replayed);
    expect(gaps.length > 0).toBe(c.client_gap);
    expect(sync.positions.a).toEqual([c.epoch, c.client_seq]);
    // Live messages after the replay are taken, and not twice.
    expect(sync.accept(env("a", c.client_seq + 1))).toBe(true);
    expect(sync.accept(env("a", c.client_seq + 1))).toBe(false);
  });
});

interface SyncCase {
  name: string;
  channels: Record<string, Start>;
  events: ({ op: string } & Record<string, unknown> | { data: [string, number][] })[];
  accepted: [string, number][];
  gaps: [string, string, number][];
  positions: Positions;
  subscribe: unknown;
}

describe("positions, dedupe and gaps", () => {
  const v = load("sync");
  it.each(v.cases as SyncCase[])("$name", (c) => {
    const sync = new ChannelPositions(c.channels);
    const gaps: [string, string, number][] = [];
    sync.onGap = (g) => gaps.push([g.ch, g.epoch, g.seq]);
    const accepted: [string, number][] = [];
    for (const ev of c.events) {
      if ("data" in ev) {
        for (const [ch, seq] of ev.data) if (sync.accept(env(ch, seq))) accepted.push([ch, seq]);
      } else {
        sync.handleControl(ev);
      }
    }
    expect(accepted).toEqual(c.accepted);
    expect(gaps).toEqual(c.gaps);
    expect(sync.positions).toEqual(c.positions);
    expect(sync.subscribeOp()).toEqual(c.subscribe);
    expect(decodeCursor(sync.cursor())).toEqual(c.positions);
  });
});
