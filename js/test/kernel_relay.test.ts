import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Client } from "../src/client";
import type { Envelope } from "../src/sync";

class FakeModel {
  sent: any[] = [];
  handlers: Array<(msg: any) => void> = [];
  send(msg: unknown): void { this.sent.push(msg); }
  on(_e: string, cb: (msg: any) => void): void { this.handlers.push(cb); }
  off(_e?: string | null, cb?: ((msg: any) => void) | null): void { this.handlers = this.handlers.filter((h) => h !== cb); }
  deliver(msg: any): void { for (const h of [...this.handlers]) h(msg); }
}

const env = (seq: number): Envelope => ({ ch: "a", seq, ts: Date.now() / 1000, data: { v: seq } });
const frames = (...fs: unknown[]) => JSON.stringify(fs);

function relayed(start: Record<string, unknown> = { a: { backfill: 5 } }) {
  const model = new FakeModel();
  const got: number[] = [];
  const gaps: string[] = [];
  const client = new Client({
    url: "http://pulseboard.invalid/", token: "unused", channels: start as any,
    transports: ["kernel"], kernel: model,
    onEnvelopes: (envs) => got.push(...envs.map((e) => e.seq)),
    onGap: (g) => gaps.push(g.reason),
  });
  return { model, client, got, gaps };
}

describe("the kernel relay adapter", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("tells the kernel where to start and takes its frames as a direct transport's", async () => {
    const { model, client, got } = relayed();
    await vi.advanceTimersByTimeAsync(0);
    expect(model.sent[0]).toMatchObject({ type: "relay-start", ch: { a: { backfill: 5 } } });
    model.deliver({ type: "relay", gen: 1, first: true, from: { a: { backfill: 5 } }, heads: {}, thinning: false,
      text: frames({ op: "subscribed", ch: "a", epoch: "e1", seq: 3, recovered: true }, [env(1), env(2), env(3)]) });
    expect(got).toEqual([1, 2, 3]);
    expect(client.status).toBe("live");
    expect(client.transport).toBe("kernel");
    model.deliver({ type: "relay", gen: 1, heads: {}, thinning: true, text: frames([env(3), env(9)]) });
    expect(got).toEqual([1, 2, 3, 9]);
    expect(client.note).toBe("thinning");
    await vi.advanceTimersByTimeAsync(4000);
    model.deliver({ type: "relay", gen: 1, heads: {}, thinning: false, text: "[]" });
    expect(client.note).toBeNull();
    client.dispose();
    expect(model.sent.at(-1)).toMatchObject({ type: "relay-stop" });
  });

  it("never follows a restart that would skip what it holds: it asks from its own position", async () => {
    const { model, client, got } = relayed();
    await vi.advanceTimersByTimeAsync(0);
    model.deliver({ type: "relay", gen: 1, first: true, from: { a: { backfill: 5 } }, heads: {}, thinning: false,
      text: frames({ op: "subscribed", ch: "a", epoch: "e1", seq: 4, recovered: true }, [env(3), env(4)]) });
    expect(got).toEqual([3, 4]);
    // Another view had the kernel restart from seq 6: 5 would be lost here, so ask again.
    model.deliver({ type: "relay", gen: 2, first: true, from: { a: { since: 6, epoch: "e1" } }, heads: {}, thinning: false,
      text: frames({ op: "subscribed", ch: "a", epoch: "e1", seq: 7, recovered: true }, [env(7)]) });
    expect(got).toEqual([3, 4]);
    expect(model.sent.at(-1)).toMatchObject({ type: "relay-start", ch: { a: { since: 4, epoch: "e1" } } });
    client.dispose();
  });

  it("a fresh view joins a relay already running from its heads", async () => {
    const { model, client, got, gaps } = relayed();
    await vi.advanceTimersByTimeAsync(0);
    model.deliver({ type: "relay", gen: 3, heads: { a: ["e1", 10] }, thinning: false, text: frames([env(11)]) });
    expect(got).toEqual([11]);
    expect(gaps).toEqual([]);
    client.dispose();
  });

  it("says what the server said when the relay ends for good", async () => {
    const { model, client } = relayed();
    await vi.advanceTimersByTimeAsync(0);
    model.deliver({ type: "relay", gen: 1, first: true, from: {}, heads: {}, thinning: false,
      text: frames({ op: "error", code: "forbidden", ch: "a", detail: "token may not read 'a'" }) });
    model.deliver({ type: "relay-end", gen: 1, fatal: "forbidden: token may not read 'a'" });
    expect(client.status).toBe("offline");
    expect(client.error).toContain("forbidden");
    client.dispose();
  });
});
