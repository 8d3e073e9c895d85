// The pure core of the browser client, mirroring widget/pulseboard/protocol.py and
// client.py: cursors, backoff, per-channel positions, dedupe and resync. No I/O here;
// client.ts turns sockets and timers into calls on `ChannelPositions`.

export interface Envelope {
  ch: string;
  seq: number;
  ts: number;
  data: Record<string, unknown>;
}

/** A starting point: null = live, {backfill: N}, or {since, epoch}. */
export type Start = null | { backfill: number } | { since: number; epoch: string };

/** Continuity was lost on `ch`: messages before `seq` of `epoch` may be missing. */
export interface Gap {
  ch: string;
  epoch: string;
  seq: number;
  reason: string;
}

export type Positions = Record<string, [string, number]>;

// --- cursors (SSE event ids, long-poll cursors) --------------------------------------

function toBase64Url(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(text: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("cursor is not base64url");
  const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  const bin = atob(padded);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** Same bytes as protocol.encode_cursor: base64url of compact JSON, keys sorted, no padding. */
export function encodeCursor(positions: Positions): string {
  const keys = Object.keys(positions).sort();
  const body = "{" + keys.map((k) => JSON.stringify(k) + ":" + JSON.stringify(positions[k])).join(",") + "}";
  return toBase64Url(new TextEncoder().encode(body));
}

/** Inverse of encodeCursor; throws on anything a server would not have issued. */
export function decodeCursor(cursor: string): Positions {
  let obj: unknown;
  try {
    obj = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(fromBase64Url(cursor)));
  } catch {
    throw new Error("cursor is not one this server issued");
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    throw new Error("cursor is not one this server issued");
  }
  const out: Positions = {};
  for (const [ch, pos] of Object.entries(obj as Record<string, unknown>)) {
    if (
      !Array.isArray(pos) || pos.length !== 2 || typeof pos[0] !== "string" ||
      !Number.isInteger(pos[1]) || (pos[1] as number) < 0 || !CHANNEL_RE.test(ch)
    ) {
      throw new Error("cursor is not one this server issued");
    }
    out[ch] = [pos[0], pos[1] as number];
  }
  return out;
}

export const CHANNEL_RE = /^[A-Za-z0-9_.:/-]{1,200}$/;

// --- backoff ------------------------------------------------------------------------

/** Full-jitter exponential backoff in seconds: uniform in [0, min(cap, base * 2**attempt)]. */
export function backoffDelay(attempt: number, rand: number = Math.random(), base = 0.5, cap = 20): number {
  return rand * backoffCeiling(attempt, base, cap);
}

export function backoffCeiling(attempt: number, base = 0.5, cap = 20): number {
  return Math.min(cap, base * 2 ** Math.min(Math.max(attempt, 0), 30));
}

// --- positions, dedupe and resync -------------------------------------------------------

/**
 * One client's position on each of its channels. Feed it every server control op
 * (`handleControl`) and every envelope (`accept`); it reports gaps through `onGap`
 * and builds the `subscribe` op to send on (re)connect.
 */
export class ChannelPositions {
  readonly positions: Positions = {};
  onGap: (gap: Gap) => void = () => {};

  constructor(public initial: Record<string, Start>) {}

  /** The `subscribe` op for a (re)connect: `since` wherever a position is known. */
  subscribeOp(): { op: "subscribe"; ch: Record<string, Start> } {
    const ch: Record<string, Start> = {};
    for (const [name, start] of Object.entries(this.initial)) {
      const pos = this.positions[name];
      ch[name] = pos ? { since: pos[1], epoch: pos[0] } : start;
    }
    return { op: "subscribe", ch };
  }

  /** True when every channel has a position (so a cursor can say where to resume). */
  complete(): boolean {
    return Object.keys(this.initial).every((ch) => ch in this.positions);
  }

  /** Apply a server control op to the positions; report lost continuity as a gap. */
  handleControl(op: Record<string, unknown>): void {
    const kind = op.op;
    if (kind === "subscribed") {
      const ch = String(op.ch);
      const epoch = String(op.epoch);
      const top = Number(op.seq);
      const pos = this.positions[ch];
      if (pos === undefined) {
        const asked = this.initial[ch];
        const backfill = asked !== null && asked !== undefined && "backfill" in asked && asked.backfill > 0;
        this.positions[ch] = [epoch, backfill ? 0 : top];
      } else if (pos[0] !== epoch) {
        this.positions[ch] = [epoch, top];
        this.onGap({ ch, epoch, seq: top, reason: "epoch changed" });
      } else if (op.recovered === false) {
        // Ahead of the server's top means its numbering went back: follow it from there.
        if (pos[1] > top) this.positions[ch] = [epoch, top];
        this.onGap({ ch, epoch, seq: Math.min(pos[1], top), reason: "history no longer holds what was missed" });
      }
    } else if (kind === "reset") {
      const ch = String(op.ch);
      const epoch = String(op.epoch);
      const top = Number(op.seq);
      this.positions[ch] = [epoch, top];
      this.onGap({ ch, epoch, seq: top, reason: "numbering restarted" });
    }
  }

  /** True when `env` is new (and record its position); false for a duplicate. */
  accept(env: Envelope): boolean {
    const pos = this.positions[env.ch];
    if (pos !== undefined && env.seq <= pos[1]) return false;
    this.positions[env.ch] = [pos ? pos[0] : "", env.seq];
    return true;
  }

  epochOf(ch: string): string {
    return this.positions[ch]?.[0] ?? "";
  }

  /** The cursor of the channels with a known position. */
  cursor(): string {
    return encodeCursor(this.positions);
  }
}

/** Decode a JWT's payload without checking it (only to read `exp`). */
export function jwtExp(token: string): number | null {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const claims = JSON.parse(new TextDecoder().decode(fromBase64Url(part))) as { exp?: unknown };
    return typeof claims.exp === "number" ? claims.exp : null;
  } catch {
    return null;
  }
}
