// The kernel relay adapter: the kernel subscribes for us (widget/pulseboard/relay.py) and sends
// the server's frames as widget messages. The browser says where each channel resumes (its
// positions); the kernel replays from there. Only frames go through here: positions, dedupe
// and gaps stay in the client, as for every other transport.

import type { TokenModel } from "../kernel_token";
import type { Connection, ConnectionHooks, Frame, TransportHost } from "./common";

/** What the adapter needs from the widget model: custom messages both ways (as the token has). */
export type KernelLink = TokenModel;

/** No message from the kernel for this long: the relay (or the kernel) is gone. The kernel beats
 * every 2 s while relaying; a first answer can wait for a busy cell, so ask again now and then. */
export const KERNEL_SILENCE_MS = 15_000;
/** "thinning" stays on the status line this long after the last thinned message. */
const THINNING_SHOWN_MS = 3_000;

interface RelayMsg {
  type: string;
  gen?: number;
  first?: boolean;
  from?: Record<string, unknown>;
  heads?: Record<string, [string, number]>;
  text?: string;
  thinning?: boolean;
  fatal?: string;
}

export function openKernel(host: TransportHost, hooks: ConnectionHooks, link: KernelLink): Connection {
  const view = Math.random().toString(36).slice(2) + Date.now().toString(36);
  let following = -1;
  let asked = -1; // the gen current when we last asked
  let lastGen = -1;
  let lastRx = Date.now();
  let thinnedAt = 0;
  let ended = false;

  const ask = () => {
    asked = lastGen;
    try {
      link.send({ type: "relay-start", view, ch: host.sync.subscribeOp().ch });
    } catch {
      /* no comm (no kernel): the silence check ends this connection */
    }
  };

  /** A restart from another view's positions that would skip some of ours. */
  const skipsOurs = (from: Record<string, unknown>): boolean => {
    for (const [ch, pos] of Object.entries(host.sync.positions)) {
      const f = from[ch] as { since?: number; epoch?: string } | null | undefined;
      if (!f || f.epoch !== pos[0] || typeof f.since !== "number" || f.since > pos[1]) return true;
    }
    return false;
  };

  const onMsg = (msg: RelayMsg): void => {
    if (ended || !msg || (msg.type !== "relay" && msg.type !== "relay-end")) return;
    lastRx = Date.now();
    if (msg.type === "relay-end") {
      if (msg.gen === following || following === -1) end({ fatal: msg.fatal || "the kernel relay stopped" });
      return;
    }
    const gen = Number(msg.gen);
    lastGen = gen;
    if (gen !== following) {
      const fresh = Object.keys(host.sync.positions).length === 0;
      if (msg.first && !skipsOurs(msg.from ?? {})) {
        following = gen;
      } else if (fresh && msg.heads) {
        // A new view joining a relay that is already running (the kernel may be busy and not
        // hear us yet): start from here, as a live start would.
        following = gen;
        for (const [ch, [epoch, seq]] of Object.entries(msg.heads)) {
          if (ch in host.sync.initial) hooks.onFrame({ op: "subscribed", ch, epoch, seq, recovered: true });
        }
      } else {
        if (asked !== gen) ask(); // resume from our own positions, never skip
        return;
      }
    }
    if (msg.thinning) thinnedAt = Date.now();
    conn.note = Date.now() - thinnedAt < THINNING_SHOWN_MS ? "thinning" : null;
    let frames: Frame[];
    try {
      frames = JSON.parse(String(msg.text ?? "[]")) as Frame[];
    } catch {
      return;
    }
    for (const frame of frames) {
      if (ended) return;
      hooks.onFrame(frame);
    }
  };

  const beat = setInterval(() => {
    if (Date.now() - lastRx > KERNEL_SILENCE_MS) end({ reason: "the kernel relay is silent" });
    else if (Date.now() - thinnedAt >= THINNING_SHOWN_MS) conn.note = null;
  }, 1000);

  const end = (info: { fatal?: string; reason?: string }) => {
    if (ended) return;
    ended = true;
    clearInterval(beat);
    link.off("msg:custom", onMsg);
    hooks.onEnd(info);
  };

  const conn: Connection = {
    kind: "kernel",
    gotFirst: false,
    note: null,
    close() {
      if (ended) return;
      try {
        link.send({ type: "relay-stop", view });
      } catch {
        /* the kernel is gone: nothing to stop */
      }
      end({});
    },
  };
  link.on("msg:custom", onMsg);
  ask();
  return conn;
}
