// The browser client: a state machine choosing WebSocket, then SSE, then long-poll, with exact
// resume; one small adapter per transport in transports/.
// Independent of the chart: the widget and the dashboard both use it. The pure
// bookkeeping (positions, dedupe, gaps, cursors, backoff) lives in sync.ts.

import { ChannelPositions, backoffDelay, jwtExp } from "./sync";
import type { Envelope, Gap, Start } from "./sync";
import { ExpiredError, FATAL_CLOSE, FatalError, authFailure, expired } from "./transports/common";
import type { Connection, ConnectionHooks, EndInfo, Frame, TransportHost, TransportKind } from "./transports/common";
import { openPoll } from "./transports/poll";
import { openSse } from "./transports/sse";
import { openWs } from "./transports/ws";

export type { TransportKind } from "./transports/common";
export type Status = "connecting" | "live" | "reconnecting" | "offline";
/** Milliseconds without a first message before the client checks whether the server is there. */
export const REACH_WATCHDOG_MS = 4000;
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
}

export function baseUrl(url: string): URL {
  const base = typeof location !== "undefined" ? location.href : "http://localhost/";
  const u = new URL(url || "./", base);
  if (!u.pathname.endsWith("/")) u.pathname += "/";
  u.hash = "";
  u.search = "";
  return u;
}

export class Client implements TransportHost {
  status: Status = "connecting";
  transport: TransportKind;
  /** Seconds between a message's `ts` and its arrival, for the latest message. */
  lag: number | null = null;
  /** Messages per second, smoothed. */
  rate = 0;
  error: string | null = null;
  /** Why it cannot connect while it keeps trying ("cannot reach <url>: <reason>"); null once live. */
  problem: string | null = null;
  readonly sync: ChannelPositions;
  /** Counters, for tests and the status line. */
  connects = 0;
  switches = 0;

  private opts: Required<Omit<ClientOptions, "onEnvelopes" | "onGap" | "onState">> & ClientOptions;
  private base: URL;
  private order: TransportKind[];
  private level = 0;
  private gen = 0;
  private probes = 0;
  private failures = 0;
  private attempt = 0;
  private conn: Connection | null = null;
  private candidate: Connection | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private upgradeTimer: ReturnType<typeof setInterval> | null = null;
  private rateTimer: ReturnType<typeof setInterval> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private counted = 0;
  private lastEmit = 0;
  private tokenWaits = 0;
  private disposed = false;
  private everLive = false;
  private watchdog: ReturnType<typeof setTimeout> | null = null;
  private onlineHandler = () => this.reconnectNow();
  private offlineHandler = () => this.goOffline();

  constructor(opts: ClientOptions) {
    this.opts = {
      transports: ["ws", "sse", "poll"],
      fallbackAfter: 3,
      upgradeInterval: 60_000,
      pingInterval: 10_000,
      pongTimeout: 5_000,
      ...opts,
    };
    this.base = baseUrl(opts.url);
    this.order = this.opts.transports;
    this.transport = this.order[0];
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
    this.connect();
  }

  /** Close every socket and timer; the client does nothing afterwards. */
  dispose(): void {
    this.disposed = true;
    this.conn?.close();
    this.candidate?.close();
    this.conn = this.candidate = null;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.upgradeTimer) clearInterval(this.upgradeTimer);
    if (this.rateTimer) clearInterval(this.rateTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    if (this.watchdog) clearTimeout(this.watchdog);
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
    if (this.disposed || this.error) return;
    this.attempt = 0;
    const old = this.conn;
    this.conn = null;
    old?.close();
    this.connect();
  }

  /** The browser lost its network: drop the (dead) connection and wait for `online`. */
  private goOffline(): void {
    if (this.disposed || this.error) return;
    const old = this.conn;
    this.conn = null;
    this.gen += 1;
    old?.close();
    this.candidate?.close();
    this.candidate = null;
    this.setStatus("offline");
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), 5000);
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

  private setStatus(status: Status): void {
    if (this.status !== status) {
      this.status = status;
      this.emit();
    }
  }

  private fail(message: string): void {
    this.error = message;
    this.conn?.close();
    this.candidate?.close();
    this.conn = this.candidate = null;
    this.setStatus("offline");
    this.emit();
  }

  private connect(): void {
    if (this.disposed || this.error) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (typeof navigator !== "undefined" && navigator.onLine === false) {
      // No network: try again later; the `online` event reconnects at once.
      this.setStatus("offline");
      this.retryTimer = setTimeout(() => this.connect(), 5000);
      return;
    }
    const kind = this.order[this.level];
    this.transport = kind;
    this.gen += 1;
    this.emit();
    void this.open(kind, false);
    // A connection that neither opens nor fails (a host that drops packets) must not leave
    // "connecting" on screen with no reason: ask whether the server is there at all.
    if (this.watchdog) clearTimeout(this.watchdog);
    const gen = this.gen;
    this.watchdog = setTimeout(() => {
      if (!this.conn?.gotFirst && gen === this.gen) void this.reachable();
    }, REACH_WATCHDOG_MS);
  }

  private async open(kind: TransportKind, probe: boolean): Promise<void> {
    const gen = this.gen;
    const stale = () => this.disposed || (probe ? this.candidate !== null : gen !== this.gen);
    let token: string;
    try {
      token = await this.token();
    } catch (e) {
      this.fail(`no token: ${(e as Error).message}`);
      return;
    }
    if (!probe && expired(token)) {
      // Expired (e.g. after a 4001 close): wait a while for the provider to hand out a new one.
      if (typeof this.opts.token === "function" && this.tokenWaits < 30) {
        this.tokenWaits += 1;
        this.setStatus(this.everLive ? "reconnecting" : "connecting");
        this.retryTimer = setTimeout(() => this.connect(), 2000);
        return;
      }
      this.fail("the token has expired: get a new one (and reload the page)");
      return;
    }
    this.tokenWaits = 0;
    if (stale()) return;
    let conn: Connection;
    const hooks: ConnectionHooks = {
      onFrame: (frame) => this.onFrame(conn, frame),
      onEnd: (info) => this.onEnd(conn, info),
    };
    try {
      if (kind === "ws") conn = openWs(this, token, hooks, this.opts.pingInterval, this.opts.pongTimeout);
      else if (kind === "sse") conn = await openSse(this, token, hooks);
      else conn = openPoll(this, hooks);
    } catch (e) {
      if (stale()) return;
      if (e instanceof FatalError) {
        this.fail(e.message);
        return;
      }
      if (probe) return;
      // Could not even start (the ticket request failed): a failure to open.
      conn = { kind, gotFirst: false, close() {} };
      this.conn = conn;
      this.onEnd(conn, e instanceof ExpiredError ? { authExpired: true } : { reason: String(e) });
      return;
    }
    if (stale()) {
      conn.close();
      return;
    }
    if (probe) this.candidate = conn;
    else this.conn = conn;
  }

  private onFrame(conn: Connection, frame: Frame): void {
    if (this.disposed) return;
    if (conn === this.candidate) {
      // A better transport works again: switch over; dedupe covers the overlap.
      this.candidate = null;
      const old = this.conn;
      this.conn = conn;
      old?.close();
      this.level = this.order.indexOf(conn.kind);
      this.transport = conn.kind;
      this.failures = 0;
      this.switches += 1;
      if (this.level === 0) this.stopUpgrades();
    } else if (conn !== this.conn) {
      return;
    }
    if (!conn.gotFirst) {
      conn.gotFirst = true;
      this.problem = null;
      this.connects += 1;
      this.attempt = 0;
      this.failures = 0;
      this.everLive = true;
      this.setStatus("live");
      this.emit();
    }
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
      if (frame.code === "forbidden" && typeof frame.ch === "string") this.fail(detail);
      else console.warn("pulseboard:", detail);
    }
  }

  private onEnd(conn: Connection, info: EndInfo): void {
    if (this.disposed || this.error) return;
    if (conn === this.candidate) {
      this.candidate = null;
      return;
    }
    if (conn !== this.conn) return;
    this.conn = null;
    if (info.fatal) return this.fail(info.fatal);
    if (info.code !== undefined && FATAL_CLOSE.has(info.code)) {
      return this.fail(`server closed the connection: ${info.code} ${info.reason ?? ""}`.trim());
    }
    this.setStatus(this.everLive ? "reconnecting" : "connecting");
    if (info.authExpired) {
      // 4001: the token expired; resume at once with `since` and whatever token we get now.
      this.connect();
      return;
    }
    const cutEarly = !conn.gotFirst;
    const gen = this.gen;
    void this.reachable().then((up) => {
      if (this.disposed || this.error || this.conn || gen !== this.gen) return;
      if (cutEarly && up && conn.kind === "ws" && this.failures === 0 && !this.everLive) {
        // A WebSocket refused before the upgrade looks like any other failure: ask over HTTP why.
        void this.checkToken();
      }
      if (cutEarly && up) {
        this.failures += 1;
        if (this.failures >= this.opts.fallbackAfter && this.level < this.order.length - 1) {
          this.level += 1;
          this.failures = 0;
          this.attempt = 0;
          this.switches += 1;
          this.startUpgrades();
          this.connect();
          return;
        }
      }
      if (!up && !cutEarly) this.attempt = 0;
      const delay = backoffDelay(this.attempt) * 1000;
      this.attempt += 1;
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
  }

  private async checkToken(): Promise<void> {
    try {
      const res = await fetch(this.endpoint("channels"), {
        headers: { Authorization: `Bearer ${await this.token()}` },
        cache: "no-store",
      });
      if (res.status === 401 || res.status === 403) await authFailure(res, "token check");
    } catch (e) {
      if (e instanceof FatalError) this.fail(e.message);
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
    if (problem !== this.problem && !this.conn?.gotFirst) {
      this.problem = problem;
      this.emit();
    }
    return reason === null;
  }

  private startUpgrades(): void {
    if (this.upgradeTimer) return;
    this.upgradeTimer = setInterval(() => this.tryUpgrade(), this.opts.upgradeInterval);
  }

  private stopUpgrades(): void {
    if (this.upgradeTimer) clearInterval(this.upgradeTimer);
    this.upgradeTimer = null;
  }

  private tryUpgrade(): void {
    if (this.disposed || this.error || this.level === 0 || this.candidate || !this.conn?.gotFirst) return;
    // Try the better transports in turn, best first.
    const kind = this.order[this.probes % this.level];
    this.probes += 1;
    void this.open(kind, true);
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
          // The provider has nothing newer yet: ask again soon.
          this.refreshTimer = setTimeout(check, 15_000);
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
