// The browser client: sockets, timers and frames, driven by two pure cores. fallback.ts decides
// which transport to open and when (WebSocket, then SSE, then long-poll, then the kernel relay);
// sync.ts keeps positions, dedupe, gaps and cursors for exact resume. One small adapter per
// transport in transports/. Independent of the chart: the widget and the dashboard both use it.

import { initialState, errorOf, reasonOf, step, transportOf } from "./fallback";
import type { Action, FallbackConfig, FallbackEvent, FallbackState, Phase, Status, TimerName } from "./fallback";
import { ChannelPositions, backoffDelay, jwtExp } from "./sync";
import type { Envelope, Gap, Start } from "./sync";
import { ExpiredError, FATAL_CLOSE, FatalError, authFailure, expired } from "./transports/common";
import type { Connection, ConnectionHooks, EndInfo, Frame, TransportHost, TransportKind } from "./transports/common";
import { openKernel } from "./transports/kernel";
import type { KernelLink } from "./transports/kernel";
import { openPoll } from "./transports/poll";
import { openSse } from "./transports/sse";
import { openWs } from "./transports/ws";

export type { TransportKind } from "./transports/common";
export type { Phase, Status } from "./fallback";
export { REACH_WATCHDOG_MS } from "./fallback";
export type TokenSource = string | (() => string | Promise<string>);

export interface ClientOptions {
  /** The server's base URL (http, https, or relative to the page like "./"). */
  url: string;
  token: TokenSource;
  /** Channels and their starting points, e.g. {"sys.a": {backfill: 300}}. */
  channels: Record<string, Start>;
  onEnvelopes?: (envs: Envelope[]) => void;
  onGap?: (gap: Gap) => void;
  onState?: (client: Client) => void;
  /** Transports to try, best first. */
  transports?: TransportKind[];
  /** Failures to open (or cuts before a first message) in a row before moving on. */
  fallbackAfter?: number;
  /** Milliseconds between tries of a better transport while on a fallback. */
  upgradeInterval?: number;
  /** Heartbeat: ping after this many idle ms, give up `pongTimeout` ms later. */
  pingInterval?: number;
  pongTimeout?: number;
  /** The widget's kernel, for the kernel relay (transport "kernel"; see transports/kernel.ts). */
  kernel?: KernelLink;
  /** Milliseconds without a direct transport open before falling back to the kernel relay. */
  relayAfter?: number;
  /** Milliseconds between tries of the direct transports while on the kernel relay. */
  relayProbeInterval?: number;
}

/** The documented time (docs/frontends.md) before a chart falls back to the kernel relay. */
export const RELAY_AFTER_MS = 15_000;

export function baseUrl(url: string): URL {
  const base = typeof location !== "undefined" ? location.href : "http://localhost/";
  const u = new URL(url || "./", base);
  if (!u.pathname.endsWith("/")) u.pathname += "/";
  u.hash = "";
  u.search = "";
  return u;
}

export class Client implements TransportHost {
  /** Seconds between a message's `ts` and its arrival, for the latest message. */
  lag: number | null = null;
  /** Messages per second, smoothed. */
  rate = 0;
  /** Why it cannot connect while it keeps trying ("cannot reach <url>: <reason>"); null once live. */
  problem: string | null = null;
  readonly sync: ChannelPositions;

  private opts: Required<Omit<ClientOptions, "onEnvelopes" | "onGap" | "onState" | "kernel">> & ClientOptions;
  private base: URL;
  private policy: FallbackConfig;
  private state: FallbackState = initialState();
  /** Events raised while actions run wait here, so each step sees the state the last one left. */
  private queue: FallbackEvent[] = [];
  private stepping = false;
  private conn: Connection | null = null;
  private candidate: Connection | null = null;
  /** Bumped whenever the main connection (or the probe) is opened or dropped: a slow open
   * (waiting for a token or a ticket) that finds it changed closes what it opened. */
  private mainGen = 0;
  private probeGen = 0;
  private timers: Partial<Record<TimerName, ReturnType<typeof setTimeout>>> = {};
  private rateTimer: ReturnType<typeof setInterval> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private counted = 0;
  private lastEmit = 0;
  private onlineHandler = () => this.dispatch({ type: "reconnect" });
  private offlineHandler = () => this.dispatch({ type: "offline" });

  constructor(opts: ClientOptions) {
    this.opts = {
      transports: ["ws", "sse", "poll"],
      fallbackAfter: 3,
      upgradeInterval: 60_000,
      pingInterval: 10_000,
      pongTimeout: 5_000,
      relayAfter: RELAY_AFTER_MS,
      relayProbeInterval: 10_000,
      ...opts,
    };
    this.base = baseUrl(opts.url);
    // The kernel relay needs a kernel to talk to.
    let order = this.opts.transports.filter((k) => k !== "kernel" || this.opts.kernel);
    if (!order.length) order = ["ws", "sse", "poll"];
    this.policy = {
      order,
      fallbackAfter: this.opts.fallbackAfter,
      upgradeInterval: this.opts.upgradeInterval,
      relayAfter: this.opts.relayAfter,
      relayProbeInterval: this.opts.relayProbeInterval,
      refreshableToken: typeof this.opts.token === "function",
      fatalCodes: [...FATAL_CLOSE],
    };
    this.sync = new ChannelPositions({ ...opts.channels });
    this.sync.onGap = (gap) => this.opts.onGap?.(gap);
    if (typeof window !== "undefined") {
      window.addEventListener("online", this.onlineHandler);
      window.addEventListener("offline", this.offlineHandler);
    }
    this.rateTimer = setInterval(() => {
      this.rate = this.rate * 0.5 + this.counted * 0.5;
      this.counted = 0;
      this.emit();
    }, 1000);
    this.dispatch({ type: "start" });
  }

  /** Where the connection is (see fallback.ts). */
  get phase(): Phase {
    return this.state.phase;
  }

  get status(): Status {
    return this.state.status;
  }

  get transport(): TransportKind {
    return transportOf(this.state, this.policy);
  }

  /** Why it stopped for good (a refused token, a forbidden channel); null while it can go on. */
  get error(): string | null {
    return errorOf(this.state);
  }

  /** A short word shown instead of "connecting" while it waits for something ("token expired"). */
  get reason(): string | null {
    return reasonOf(this.state);
  }

  /** Counters, for tests and the status line. */
  get connects(): number {
    return this.state.connects;
  }

  get switches(): number {
    return this.state.switches;
  }

  private get disposed(): boolean {
    return this.state.phase.kind === "disposed";
  }

  /** Close every socket and timer; the client does nothing afterwards. */
  dispose(): void {
    this.dispatch({ type: "dispose" });
    if (this.rateTimer) clearInterval(this.rateTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    if (typeof window !== "undefined") {
      window.removeEventListener("online", this.onlineHandler);
      window.removeEventListener("offline", this.offlineHandler);
    }
  }

  /** Publish one message: over the WebSocket when on it, else `POST publish`. */
  async publish(ch: string, data: Record<string, unknown>): Promise<void> {
    if (this.conn?.kind === "ws" && this.conn.send?.({ op: "publish", ch, data })) return;
    const res = await fetch(this.endpoint("publish"), {
      method: "POST",
      headers: { Authorization: `Bearer ${await this.token()}`, "Content-Type": "application/json" },
      body: JSON.stringify({ ch, data }),
    });
    if (!res.ok) throw new Error(`publish refused: HTTP ${res.status}`);
  }

  /**
   * Follow more channels (e.g. a new run matching a chart's pattern). A WebSocket
   * subscribes to them at once; SSE and long-poll reconnect with the longer list.
   */
  addChannels(channels: Record<string, Start>): void {
    const fresh = Object.entries(channels).filter(([ch]) => !(ch in this.sync.initial));
    if (this.disposed || !fresh.length) return;
    for (const [ch, start] of fresh) this.sync.initial[ch] = start;
    if (this.conn?.kind === "ws" && this.conn.send?.({ op: "subscribe", ch: Object.fromEntries(fresh) })) return;
    if (this.conn) this.reconnectNow();
  }

  /** Drop the current connection and connect again at once (e.g. the browser is back online). */
  reconnectNow(): void {
    this.dispatch({ type: "reconnect" });
  }

  /** What the status line should add, e.g. "thinning" while the kernel relay downsamples. */
  get note(): string | null {
    return this.conn?.note ?? null;
  }

  // --- internals --------------------------------------------------------------------

  endpoint(path: string, params?: URLSearchParams): string {
    const u = new URL(path, this.base);
    if (params) u.search = params.toString();
    return u.toString();
  }

  async token(): Promise<string> {
    const t = this.opts.token;
    return typeof t === "function" ? await t() : t;
  }

  private emit(): void {
    this.lastEmit = Date.now();
    this.opts.onState?.(this);
  }

  /** Feed one event to the fallback policy and carry out what it says. */
  private dispatch(ev: FallbackEvent): void {
    this.queue.push(ev);
    if (this.stepping) return;
    this.stepping = true;
    let changed = false;
    try {
      for (let next = this.queue.shift(); next; next = this.queue.shift()) {
        const [state, actions] = step(this.state, next, this.policy);
        changed ||= state !== this.state;
        this.state = state;
        for (const action of actions) this.run(action);
      }
    } finally {
      this.stepping = false;
    }
    if (changed) this.emit();
  }

  private run(a: Action): void {
    switch (a.type) {
      case "open":
        if (a.probe) {
          this.probeGen += 1;
          void this.openProbe(a.transport, this.probeGen);
        } else {
          this.mainGen += 1;
          // No network: try again later; the `online` event reconnects at once.
          if (typeof navigator !== "undefined" && navigator.onLine === false) this.dispatch({ type: "offline" });
          else void this.openMain(a.transport, this.mainGen);
        }
        return;
      case "close":
        if (a.which === "main") {
          this.mainGen += 1;
          const old = this.conn;
          this.conn = null;
          old?.close();
        } else {
          this.probeGen += 1;
          const old = this.candidate;
          this.candidate = null;
          old?.close();
        }
        return;
      case "promote": {
        this.probeGen += 1;
        const old = this.conn;
        this.conn = this.candidate;
        this.candidate = null;
        old?.close();
        return;
      }
      case "arm": {
        this.disarm(a.timer);
        const fire = () => this.dispatch({ type: "timer", timer: a.timer });
        const ms = "backoff" in a ? backoffDelay(a.backoff) * 1000 : a.ms;
        this.timers[a.timer] = a.timer === "upgrade" ? setInterval(fire, ms) : setTimeout(fire, ms);
        return;
      }
      case "disarm":
        this.disarm(a.timer);
        return;
      case "checkReach": {
        const check = a.check;
        void this.reachable().then((up) => {
          if (check !== undefined) this.dispatch({ type: "reach", check, up });
        });
        return;
      }
      case "checkToken":
        void this.checkToken();
        return;
    }
  }

  private disarm(timer: TimerName): void {
    const t = this.timers[timer];
    if (t === undefined) return;
    // clearTimeout and clearInterval share one pool of ids.
    clearTimeout(t);
    clearInterval(t);
    delete this.timers[timer];
  }

  private hooks(get: () => Connection): ConnectionHooks {
    return {
      onFrame: (frame) => this.onFrame(get(), frame),
      onEnd: (info) => this.onEnd(get(), info),
    };
  }

  private async openMain(kind: TransportKind, gen: number): Promise<void> {
    const stale = () => gen !== this.mainGen;
    if (kind === "kernel") {
      // The kernel holds the token and subscribes itself.
      const conn: Connection = openKernel(this, this.hooks(() => conn), this.opts.kernel!);
      this.conn = conn;
      return;
    }
    let token: string;
    try {
      token = await this.token();
    } catch (e) {
      // No token to be had fails every way in, even if the relay timer moved on meanwhile: the
      // kernel relay needs the same kernel that did not answer (its word says so, and a token
      // arriving later starts the chart again).
      if (this.state.phase.kind !== "disposed") this.dispatch({ type: "fatal", error: `no token: ${(e as Error).message}` });
      return;
    }
    if (stale()) return;
    this.dispatch({ type: "token", expired: expired(token) });
    if (stale() || this.state.phase.kind !== "connecting") return;
    let conn: Connection;
    try {
      conn = await this.openDirect(kind, token, this.hooks(() => conn));
    } catch (e) {
      if (stale()) return;
      if (e instanceof FatalError) this.dispatch({ type: "fatal", error: e.message });
      // Could not even start (the ticket request failed): a failure to open.
      else this.dispatch({ type: "ended", ...(e instanceof ExpiredError ? { authExpired: true } : { reason: String(e) }) });
      return;
    }
    if (stale()) conn.close();
    else this.conn = conn;
  }

  private async openProbe(kind: TransportKind, gen: number): Promise<void> {
    const stale = () => gen !== this.probeGen;
    let token: string;
    try {
      token = await this.token();
    } catch (e) {
      if (!stale()) this.dispatch({ type: "fatal", error: `no token: ${(e as Error).message}` });
      return;
    }
    if (stale()) return;
    let conn: Connection;
    try {
      if (kind === "kernel") throw new Error("the kernel relay is no probe");
      conn = await this.openDirect(kind, token, this.hooks(() => conn));
    } catch (e) {
      if (stale()) return;
      if (e instanceof FatalError) this.dispatch({ type: "fatal", error: e.message });
      else this.dispatch({ type: "ended", probe: true });
      return;
    }
    if (stale()) conn.close();
    else this.candidate = conn;
  }

  private async openDirect(kind: TransportKind, token: string, hooks: ConnectionHooks): Promise<Connection> {
    if (kind === "ws") return openWs(this, token, hooks, this.opts.pingInterval, this.opts.pongTimeout);
    if (kind === "sse") return await openSse(this, token, hooks);
    return openPoll(this, hooks);
  }

  private onFrame(conn: Connection, frame: Frame): void {
    if (this.disposed) return;
    if (conn === this.candidate) {
      // A better transport works again: the policy switches over; dedupe covers the overlap.
      conn.gotFirst = true;
      this.problem = null;
      this.dispatch({ type: "first", probe: true });
    } else if (conn !== this.conn) {
      return;
    } else if (!conn.gotFirst) {
      conn.gotFirst = true;
      this.problem = null;
      this.dispatch({ type: "first" });
    }
    if (conn !== this.conn) return;
    if (Array.isArray(frame)) {
      const fresh: Envelope[] = [];
      for (const env of frame as Envelope[]) {
        if (this.sync.accept(env)) fresh.push(env);
      }
      if (fresh.length) {
        const now = Date.now() / 1000;
        // The rate counts live messages, not a replay of old ones.
        for (const env of fresh) if (now - env.ts < 10) this.counted += 1;
        this.lag = Math.max(0, now - fresh[fresh.length - 1].ts);
        this.opts.onEnvelopes?.(fresh);
        if (Date.now() - this.lastEmit > 250) this.emit();
      }
      return;
    }
    const op = frame.op;
    this.sync.handleControl(frame);
    if (op === "welcome" || op === "refreshed") this.scheduleRefresh(Number(frame.exp));
    else if (op === "error") {
      const detail = `${String(frame.code)}: ${String(frame.detail)}`;
      if (frame.code === "forbidden" && typeof frame.ch === "string") this.dispatch({ type: "fatal", error: detail });
      else console.warn("pulseboard:", detail);
    }
  }

  private onEnd(conn: Connection, info: EndInfo): void {
    if (conn === this.candidate) {
      this.candidate = null;
      this.dispatch({ type: "ended", probe: true });
    } else if (conn === this.conn) {
      this.conn = null;
      this.dispatch({ type: "ended", ...info });
    }
  }

  private async checkToken(): Promise<void> {
    try {
      const res = await fetch(this.endpoint("channels"), {
        headers: { Authorization: `Bearer ${await this.token()}` },
        cache: "no-store",
      });
      if (res.status === 401 || res.status === 403) await authFailure(res, "token check");
    } catch (e) {
      if (e instanceof FatalError) this.dispatch({ type: "fatal", error: e.message });
      // Anything else (CORS, network) tells us nothing: carry on.
    }
  }

  /** Is the server there at all? (If not, a failure says nothing about the transport.) When
   * not, `problem` says so, shown while the client keeps trying. */
  private async reachable(): Promise<boolean> {
    if (typeof navigator !== "undefined" && navigator.onLine === false) return false;
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), 3000);
    let reason: string | null = null;
    try {
      await fetch(this.endpoint("healthz"), { mode: "no-cors", cache: "no-store", signal: ctl.signal });
    } catch {
      // The browser gives no detail (refused, unknown host, blocked all look alike).
      reason = ctl.signal.aborted ? "no answer within 3 s" : "no answer (connection refused, unknown host or blocked)";
    }
    clearTimeout(t);
    const problem = reason && `cannot reach ${this.base.toString()}: ${reason}; retrying`;
    if (problem !== this.problem && !this.conn?.gotFirst && !this.disposed) {
      this.problem = problem;
      this.emit();
    }
    return reason === null;
  }

  private scheduleRefresh(exp: number): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    if (typeof this.opts.token !== "function" || !Number.isFinite(exp)) return;
    const wait = Math.max(1000, (exp - Date.now() / 1000) * 800);
    const check = async () => {
      const conn = this.conn;
      if (this.disposed || !conn?.send) return;
      try {
        const token = await this.token();
        const newExp = jwtExp(token);
        if (newExp !== null && newExp <= exp) {
          // The provider has nothing newer yet (a rotator about to write one): ask again soon,
          // well before this one expires when it can.
          const left = exp - Date.now() / 1000;
          this.refreshTimer = setTimeout(check, Math.max(1000, Math.min(15_000, left * 300)));
          return;
        }
        conn.send({ op: "refresh", token });
      } catch (e) {
        console.warn("pulseboard: token refresh failed", e);
      }
    };
    this.refreshTimer = setTimeout(check, Math.min(wait, 2 ** 31 - 1));
  }
}
