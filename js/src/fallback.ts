// The transport fallback, pure: which transport to open, when to fall back (WebSocket, then SSE,
// then long-poll, then the kernel relay), when to try a better one again, when to back off and
// when to stop. `step(state, event)` gives the next state and the actions to take; no timers,
// sockets or clocks in here. client.ts turns sockets and timers into events and carries out the
// actions; tests/vectors/fallback.json pins the behaviour (js/test/fallback.test.ts).

import type { TransportKind } from "./transports/common";

export type Status = "connecting" | "live" | "reconnecting" | "offline";
export type TimerName = "retry" | "relay" | "upgrade" | "watchdog";

/** Milliseconds without a first message before the client checks whether the server is there. */
export const REACH_WATCHDOG_MS = 4000;
/** How long to wait for a token provider to hand out a fresh token, and how many times. */
export const TOKEN_WAIT_MS = 2000;
export const TOKEN_WAITS = 30;
/** The retry after the browser says it is offline (its `online` event reconnects sooner). */
export const OFFLINE_RETRY_MS = 5000;

export interface FallbackConfig {
  /** Transports to try, best first; "kernel" (the relay) only when there is a kernel. */
  order: TransportKind[];
  /** Failures to open (or cuts before a first message) in a row before moving on. */
  fallbackAfter: number;
  /** Milliseconds between tries of a better transport while on a lower direct one. */
  upgradeInterval: number;
  /** Milliseconds without a direct transport live before falling back to the kernel relay. */
  relayAfter: number;
  /** Milliseconds between probe rounds over the direct transports while on the relay. */
  relayProbeInterval: number;
  /** The token comes from a provider that may hand out a fresh one (worth waiting for). */
  refreshableToken: boolean;
  /** Close codes after which reconnecting cannot help (closes.json, `retry: false`). */
  fatalCodes: readonly number[];
}

/**
 * Where the client's connection is. "main" is the connection charts read from; a probe is a
 * second connection over a better transport that replaces it once its first frame arrives.
 */
export type Phase =
  | { kind: "idle" }
  /** The main connection is opening over `transport` (no frame yet). */
  | { kind: "connecting"; transport: TransportKind }
  /** Frames arrive over a direct transport. */
  | { kind: "live"; transport: TransportKind }
  /** Frames arrive through the kernel relay. */
  | { kind: "relayed" }
  /** Live over `transport` while a probe tries `trying`; `step` >= 0 in a relay's probe round. */
  | { kind: "probing"; transport: TransportKind; trying: TransportKind; step: number }
  /** The main connection ended: is the server there at all? (`check` matches the answer.) */
  | { kind: "checking"; transport: TransportKind; early: boolean; check: number }
  /** Waiting for the retry timer (backoff, or a token provider's fresh token). */
  | { kind: "backoff"; transport: TransportKind }
  /** The browser has no network: waiting for `online` or the retry timer. */
  | { kind: "offline" }
  /** Reconnecting cannot help (refused token, forbidden channel, fatal close). */
  | { kind: "failed"; error: string }
  | { kind: "disposed" };

export interface FallbackState {
  readonly phase: Phase;
  /** What the status line says (kept as before: "live" stays up while a reconnect opens). */
  readonly status: Status;
  /** Index in `order` of the transport the main connection uses. */
  readonly level: number;
  /** Early failures in a row on this level while the server answers. */
  readonly failures: number;
  /** Backoff attempt for the next retry. */
  readonly attempt: number;
  /** Upgrade tries so far while on a lower direct transport (they rotate best first). */
  readonly probes: number;
  readonly everLive: boolean;
  /** Waits so far for a fresh token (>0 shows "token expired"). */
  readonly tokenWaits: number;
  readonly relayArmed: boolean;
  /** Period of the running upgrade timer, null when none runs. */
  readonly upgradeEvery: number | null;
  /** Id of the last reachability check asked for. */
  readonly checks: number;
  /** Connections that reached their first frame; transport switches. */
  readonly connects: number;
  readonly switches: number;
}

export type Action =
  /** Open the main connection (or, with `probe`, a probe) over `transport`. */
  | { type: "open"; transport: TransportKind; probe?: true }
  | { type: "close"; which: "main" | "probe" }
  /** The probe becomes the main connection; close the old main. */
  | { type: "promote" }
  /** (Re)start a timer: `ms`, or a jittered backoff for `backoff` attempts. "upgrade" repeats. */
  | { type: "arm"; timer: TimerName; ms: number }
  | { type: "arm"; timer: "retry"; backoff: number }
  | { type: "disarm"; timer: TimerName }
  /** Ask whether the server answers at all; with `check`, report it as a `reach` event. */
  | { type: "checkReach"; check?: number }
  /** Ask over HTTP whether the token is refused (a refused WebSocket says nothing). */
  | { type: "checkToken" };

export type FallbackEvent =
  | { type: "start" }
  /** The main connection's token, just before it opens (direct transports only). */
  | { type: "token"; expired: boolean }
  /** A connection's first frame. */
  | { type: "first"; probe?: boolean }
  /** A connection ended (or could not start). */
  | { type: "ended"; probe?: boolean; fatal?: string; code?: number; reason?: string; authExpired?: boolean }
  | { type: "reach"; check: number; up: boolean }
  | { type: "timer"; timer: TimerName }
  /** Something said reconnecting cannot help (no token, forbidden channel, refused token). */
  | { type: "fatal"; error: string }
  | { type: "offline" }
  /** Connect again at once (back online, more channels, asked to). */
  | { type: "reconnect" }
  | { type: "dispose" };

export function initialState(): FallbackState {
  return {
    phase: { kind: "idle" }, status: "connecting", level: 0, failures: 0, attempt: 0, probes: 0,
    everLive: false, tokenWaits: 0, relayArmed: false, upgradeEvery: null, checks: 0, connects: 0, switches: 0,
  };
}

/** The transport shown on the status line. */
export function transportOf(state: FallbackState, cfg: FallbackConfig): TransportKind {
  return cfg.order[state.level];
}

export function errorOf(state: FallbackState): string | null {
  return state.phase.kind === "failed" ? state.phase.error : null;
}

export function reasonOf(state: FallbackState): string | null {
  return state.tokenWaits > 0 ? "token expired" : null;
}

type Result = [FallbackState, Action[]];

const hasMain = (p: Phase) => p.kind === "connecting" || p.kind === "live" || p.kind === "relayed" || p.kind === "probing";
const relayLevel = (cfg: FallbackConfig) => cfg.order.indexOf("kernel");
const lostStatus = (s: FallbackState): Status => (s.everLive ? "reconnecting" : "connecting");

/** Open the main connection on the current level. */
function connect(s: FallbackState, cfg: FallbackConfig, acts: Action[]): Result {
  if (s.phase.kind === "backoff" || s.phase.kind === "offline") acts.push({ type: "disarm", timer: "retry" });
  const transport = cfg.order[s.level];
  const relay = relayLevel(cfg);
  let relayArmed = s.relayArmed;
  if (relay > 0 && s.level !== relay && !relayArmed) {
    acts.push({ type: "arm", timer: "relay", ms: cfg.relayAfter });
    relayArmed = true;
  }
  acts.push({ type: "open", transport });
  // A connection that neither opens nor fails (a host that drops packets) must not leave
  // "connecting" on screen with no reason: the watchdog asks whether the server is there.
  acts.push({ type: "arm", timer: "watchdog", ms: REACH_WATCHDOG_MS });
  return [{ ...s, phase: { kind: "connecting", transport }, relayArmed }, acts];
}

/** Keep the upgrade timer running at the period this level wants. */
function upgrades(s: FallbackState, cfg: FallbackConfig, acts: Action[]): FallbackState {
  const every = s.level === relayLevel(cfg) ? cfg.relayProbeInterval : cfg.upgradeInterval;
  if (s.upgradeEvery === every) return s;
  acts.push({ type: "arm", timer: "upgrade", ms: every });
  return { ...s, upgradeEvery: every };
}

/** Move down to `level` (a worse transport, or the relay) and connect there. */
function fallTo(s: FallbackState, level: number, cfg: FallbackConfig, acts: Action[]): Result {
  const moved = upgrades({ ...s, level, failures: 0, attempt: 0, switches: s.switches + 1 }, cfg, acts);
  return connect(moved, cfg, acts);
}

function closeAll(p: Phase, acts: Action[]): void {
  if (hasMain(p)) acts.push({ type: "close", which: "main" });
  if (p.kind === "probing") acts.push({ type: "close", which: "probe" });
}

function fail(s: FallbackState, error: string, acts: Action[]): Result {
  closeAll(s.phase, acts);
  for (const timer of ["retry", "relay", "upgrade", "watchdog"] as const) acts.push({ type: "disarm", timer });
  return [{ ...s, phase: { kind: "failed", error }, status: "offline", relayArmed: false, upgradeEvery: null }, acts];
}

/** The main connection's first frame: it is live. */
function gotFirst(s: FallbackState, transport: TransportKind, acts: Action[]): FallbackState {
  let relayArmed = s.relayArmed;
  if (transport !== "kernel" && relayArmed) {
    acts.push({ type: "disarm", timer: "relay" });
    relayArmed = false;
  }
  return {
    ...s, phase: transport === "kernel" ? { kind: "relayed" } : { kind: "live", transport }, status: "live",
    connects: s.connects + 1, attempt: 0, failures: 0, everLive: true, relayArmed,
  };
}

/** The main connection ended (closed by the server, cut, or never opened). */
function mainEnded(s: FallbackState, ev: Extract<FallbackEvent, { type: "ended" }>, cfg: FallbackConfig, acts: Action[]): Result {
  const p = s.phase;
  if (!hasMain(p)) return [s, acts];
  // A probe belongs to a live connection: it goes with it (a reconnect opens its own).
  if (p.kind === "probing") acts.push({ type: "close", which: "probe" });
  const transport = p.kind === "relayed" ? "kernel" : (p as { transport: TransportKind }).transport;
  // No main connection any more (so failing closes nothing else).
  const gone: FallbackState = { ...s, phase: { kind: "backoff", transport } };
  if (ev.fatal) return fail(gone, ev.fatal, acts);
  if (ev.code !== undefined && cfg.fatalCodes.includes(ev.code)) {
    return fail(gone, `server closed the connection: ${ev.code} ${ev.reason ?? ""}`.trim(), acts);
  }
  const lost = { ...s, status: lostStatus(s) };
  if (ev.authExpired) {
    // The token expired: resume at once with `since` and whatever token the provider has now.
    return connect(lost, cfg, acts);
  }
  const check = s.checks + 1;
  acts.push({ type: "checkReach", check });
  return [{ ...lost, checks: check, phase: { kind: "checking", transport, early: p.kind === "connecting", check } }, acts];
}

/** Is the server there? If so, an early cut counts against this transport; else just retry. */
function reached(s: FallbackState, up: boolean, cfg: FallbackConfig, acts: Action[]): Result {
  const p = s.phase as Extract<Phase, { kind: "checking" }>;
  let next = s;
  if (p.early && up) {
    // A WebSocket refused before the upgrade looks like any other failure: ask over HTTP why.
    if (p.transport === "ws" && s.failures === 0 && !s.everLive) acts.push({ type: "checkToken" });
    const failures = s.failures + 1;
    if (failures >= cfg.fallbackAfter && s.level < cfg.order.length - 1) return fallTo(s, s.level + 1, cfg, acts);
    next = { ...next, failures };
  }
  // The server is down, not the transport: start the backoff over once it is back.
  if (!up && !p.early) next = { ...next, attempt: 0 };
  acts.push({ type: "arm", timer: "retry", backoff: next.attempt });
  return [{ ...next, attempt: next.attempt + 1, phase: { kind: "backoff", transport: p.transport } }, acts];
}

function tick(s: FallbackState, timer: TimerName, cfg: FallbackConfig, acts: Action[]): Result {
  const p = s.phase;
  const relay = relayLevel(cfg);
  if (timer === "retry") {
    return p.kind === "backoff" || p.kind === "offline" ? connect(s, cfg, acts) : [s, acts];
  }
  if (timer === "watchdog") {
    if (p.kind === "connecting") acts.push({ type: "checkReach" });
    return [s, acts];
  }
  if (timer === "relay") {
    const s2 = { ...s, relayArmed: false };
    // Not live on a direct transport within `relayAfter`: fall back to the kernel relay.
    if (relay <= 0 || s.level === relay || p.kind === "live" || p.kind === "probing") return [s2, acts];
    closeAll(p, acts);
    return fallTo(s2, relay, cfg, acts);
  }
  // "upgrade": while live below the best transport, try a better one.
  if (s.level === 0) return [s, acts];
  if (p.kind === "relayed") {
    // A round over the direct transports, best first (the next one when one fails to open).
    acts.push({ type: "open", transport: cfg.order[0], probe: true });
    return [{ ...s, phase: { kind: "probing", transport: "kernel", trying: cfg.order[0], step: 0 } }, acts];
  }
  if (p.kind === "live") {
    // The better transports in turn, best first.
    const trying = cfg.order[s.probes % s.level];
    acts.push({ type: "open", transport: trying, probe: true });
    return [{ ...s, probes: s.probes + 1, phase: { kind: "probing", transport: p.transport, trying, step: -1 } }, acts];
  }
  return [s, acts];
}

function probeEvent(s: FallbackState, ev: FallbackEvent, cfg: FallbackConfig, acts: Action[]): Result {
  const p = s.phase;
  if (p.kind !== "probing") return [s, acts];
  if (ev.type === "first") {
    // A better transport works again: switch over; dedupe covers the overlap.
    acts.push({ type: "promote" });
    let next: FallbackState = { ...s, level: cfg.order.indexOf(p.trying), failures: 0, switches: s.switches + 1 };
    acts.push({ type: "disarm", timer: "upgrade" });
    next = { ...next, upgradeEvery: null };
    if (next.level > 0) next = upgrades(next, cfg, acts);
    return [gotFirst(next, p.trying, acts), acts];
  }
  // The probe failed: while relayed, the round goes on to the next direct transport.
  const relay = relayLevel(cfg);
  if (s.level === relay && p.step >= 0 && p.step + 1 < s.level) {
    const trying = cfg.order[p.step + 1];
    acts.push({ type: "open", transport: trying, probe: true });
    return [{ ...s, phase: { ...p, trying, step: p.step + 1 } }, acts];
  }
  const back: Phase = p.transport === "kernel" ? { kind: "relayed" } : { kind: "live", transport: p.transport };
  return [{ ...s, phase: back }, acts];
}

/**
 * The next state and what to do, for one event. Events that do not apply to the current phase
 * (a late timer, a stale answer) return the same state object and no actions.
 */
export function step(s: FallbackState, ev: FallbackEvent, cfg: FallbackConfig): Result {
  const acts: Action[] = [];
  const p = s.phase;
  if (p.kind === "disposed") return [s, acts];
  if (ev.type === "dispose") {
    closeAll(p, acts);
    for (const timer of ["retry", "relay", "upgrade", "watchdog"] as const) acts.push({ type: "disarm", timer });
    return [{ ...s, phase: { kind: "disposed" } }, acts];
  }
  if (p.kind === "failed") return [s, acts];
  switch (ev.type) {
    case "start":
      return p.kind === "idle" ? connect(s, cfg, acts) : [s, acts];
    case "token":
      if (p.kind !== "connecting") return [s, acts];
      if (!ev.expired) return [s.tokenWaits ? { ...s, tokenWaits: 0 } : s, acts];
      // Expired (e.g. after a 4001 close): wait a while for the provider to hand out a new one.
      if (cfg.refreshableToken && s.tokenWaits < TOKEN_WAITS) {
        acts.push({ type: "arm", timer: "retry", ms: TOKEN_WAIT_MS });
        return [{ ...s, tokenWaits: s.tokenWaits + 1, status: lostStatus(s), phase: { kind: "backoff", transport: p.transport } }, acts];
      }
      return fail(s, "the token has expired: get a new one (and reload the page)", acts);
    case "first":
      if (ev.probe) return probeEvent(s, ev, cfg, acts);
      return p.kind === "connecting" ? [gotFirst(s, p.transport, acts), acts] : [s, acts];
    case "ended":
      return ev.probe ? probeEvent(s, ev, cfg, acts) : mainEnded(s, ev, cfg, acts);
    case "reach":
      return p.kind === "checking" && p.check === ev.check ? reached(s, ev.up, cfg, acts) : [s, acts];
    case "timer":
      return tick(s, ev.timer, cfg, acts);
    case "fatal":
      return fail(s, ev.error, acts);
    case "offline":
      closeAll(p, acts);
      // Time offline does not count towards `relayAfter`: the relay is armed again on reconnect.
      if (s.relayArmed) acts.push({ type: "disarm", timer: "relay" });
      acts.push({ type: "arm", timer: "retry", ms: OFFLINE_RETRY_MS });
      return [{ ...s, phase: { kind: "offline" }, status: "offline", relayArmed: false }, acts];
    case "reconnect":
      if (p.kind === "idle") return [s, acts];
      closeAll(p, acts);
      return connect({ ...s, attempt: 0 }, cfg, acts);
  }
}
