// A chart fed by a client: the piece the widget and the dashboard both mount. Channel
// patterns (`train.*`) are resolved against `GET channels` and looked up again every few
// seconds, so a new run joins the chart while it is open. A host collector's channel
// (`sys.<host>`) shows as a group of small charts by unit.

import { Chart } from "./chart";
import type { ChartOptions, StatusInfo } from "./chart";
import { Client, baseUrl } from "./client";
import type { ClientOptions } from "./client";
import type { Envelope, Gap, Start } from "./sync";
import { isPattern, matching } from "./chart/glob";
import { cut, fetchRange, overlaps } from "./chart/history";
import { HOST_GROUPS, groupOf, isHostChart } from "./chart/hostgroup";
import { RunColors } from "./runs/live";
import { missingFieldsText, noDataText } from "./notices";
import css from "./styles.css";
import uplotCss from "uplot/dist/uPlot.min.css";

/** How often a chart with patterns asks for new channels, and how many it follows at most. */
export const DISCOVER_EVERY_MS = 5000;
export const MAX_CHANNELS = 256;
/** Envelopes asked for when loading a range from history (about four per pixel column). */
export const HISTORY_POINTS = 4000;
/** After going live, how long the replay may take before a channel without data is named. */
export const NO_DATA_AFTER_MS = 1500;

export function injectStyles(doc: Document = document): void {
  if (doc.getElementById("pulseboard-styles")) return;
  const style = doc.createElement("style");
  style.id = "pulseboard-styles";
  style.textContent = uplotCss + "\n" + css;
  doc.head.appendChild(style);
}

export interface LiveOptions extends ChartOptions {
  url: string;
  token: ClientOptions["token"];
  /** Recent messages to ask for on the first subscribe (default: enough for the window at 20 Hz). */
  backfill?: number;
  client?: Partial<ClientOptions>;
  /** Called when the client first goes live (e.g. to drop a saved snapshot). */
  onLive?: () => void;
  /** How often patterns are looked up again (ms). */
  discoverEvery?: number;
  /** Colour each run's series by this config value of its run record (`GET runs`). */
  colorBy?: string | null;
}

export class LiveChart {
  /** The main chart (in a host group: the one for fields no group claims). */
  readonly chart: Chart;
  /** Every chart, the main one last. */
  readonly charts: Chart[] = [];
  client: Client | null = null;
  private groups = new Map<string, Chart>();
  private seenFields = new Set<string>();
  private wasLive = false;
  private lastStatus: StatusInfo | null = null;
  private discover: ReturnType<typeof setInterval> | null = null;
  private disposed = false;
  private readonly start: Start;
  private readonly host: boolean;
  /** Channels whose older part was asked for, and the ranges of each that came thinned. */
  private olderAsked = new Set<string>();
  private thin = new Map<string, [number, number][]>();
  private colors: RunColors | null = null;
  /** Fields seen per channel, and what the chart says about missing data (see notices.ts). */
  private fieldsOf = new Map<string, Set<string>>();
  /** Of those, the fields that came as a number at least once: the ones the chart can draw. */
  private numericOf = new Map<string, Set<string>>();
  private notices: { noData: string | null; fields: string | null; pattern: string | null } =
    { noData: null, fields: null, pattern: null };
  private noDataTimer: ReturnType<typeof setTimeout> | null = null;
  private readable: string[] = [];

  constructor(private parent: HTMLElement, private opts: LiveOptions) {
    injectStyles(parent.ownerDocument);
    const host = (this.host = isHostChart(opts.channels, opts.fields));
    const onZoom = (r: [number, number] | null) => void this.zoomed(r);
    this.chart = new Chart(parent, host ? { ...opts, onZoom, accept: (f) => groupOf(f) === null } : { ...opts, onZoom });
    this.charts.push(this.chart);
    const window = opts.window === undefined ? 300 : opts.window;
    const maxPoints = opts.maxPoints ?? 200_000;
    this.start = { backfill: opts.backfill ?? Math.min(maxPoints, window === null ? maxPoints : Math.ceil(window * 20)) };
    if (opts.colorBy) {
      this.colors = new RunColors(opts.url, opts.token, opts.channels, opts.colorBy, (m) => {
        for (const c of this.charts) c.setColors(m);
        this.chart.root.dataset.colorBy = opts.colorBy ?? "";
      });
    }
    const plain = opts.channels.filter((c) => !isPattern(c));
    if (plain.length) this.connect(plain);
    if (plain.length < opts.channels.length) {
      void this.lookUp();
      this.discover = setInterval(() => void this.lookUp(), opts.discoverEvery ?? DISCOVER_EVERY_MS);
    }
  }

  private connect(channels: string[]): void {
    if (this.client) {
      this.client.addChannels(Object.fromEntries(channels.map((ch) => [ch, this.start])));
      return;
    }
    this.client = new Client({
      url: this.opts.url,
      token: this.opts.token,
      channels: Object.fromEntries(channels.map((ch) => [ch, this.start])),
      ...this.opts.client,
      onEnvelopes: (envs) => {
        if (!this.wasLive) this.goneLive();
        this.add(envs);
      },
      onGap: (gap: Gap) => this.charts.forEach((c) => c.gap(gap)),
      onState: (c) => {
        if (c.status === "live" && !this.wasLive) this.goneLive();
        if (c.status === "live" && !this.noDataTimer) {
          this.noDataTimer = setTimeout(() => void this.checkNoData(), NO_DATA_AFTER_MS);
        }
        this.showStatus();
      },
    });
    this.expose();
  }

  /** Resolve the patterns against the channels the token may read; follow the new ones. */
  private async lookUp(): Promise<void> {
    try {
      const t = this.opts.token;
      const token = typeof t === "function" ? await t() : t;
      const res = await fetch(new URL("channels", baseUrl(this.opts.url)).toString(), {
        headers: { Authorization: `Bearer ${token}` }, cache: "no-store",
      });
      if (!res.ok || this.disposed) return;
      const names = ((await res.json()).channels as { ch: string }[]).map((c) => c.ch).sort();
      const known = this.client ? Object.keys(this.client.sync.initial) : [];
      const fresh = matching(this.opts.channels.filter(isPattern), names).filter((c) => !known.includes(c));
      const room = MAX_CHANNELS - known.length;
      if (fresh.length && room > 0) this.connect(fresh.slice(0, room));
      else if (!this.client) this.notice("pattern", `no readable channel matches ${this.opts.channels.join(", ")} yet`);
      if (fresh.length) this.notice("pattern", null);
    } catch {
      /* the server is away: try again at the next look-up */
    }
  }

  /** The client's state on every chart, with the reason nothing shows when there is one. */
  private showStatus(): void {
    const c = this.client;
    const n = this.notices;
    const error = c?.error ?? c?.problem ?? n.pattern ?? n.noData ?? n.fields ?? null;
    this.lastStatus = c
      ? { status: c.status, transport: c.transport, lag: c.lag, rate: c.rate, error, reason: c.reason, note: c.note }
      : { status: "connecting", transport: "ws", lag: null, rate: 0, error };
    this.charts.forEach((ch) => ch.setStatus(this.lastStatus!));
  }

  private notice(kind: keyof LiveChart["notices"], text: string | null): void {
    if (this.notices[kind] === text) return;
    this.notices[kind] = text;
    this.showStatus();
  }

  /** Live, but some plain channels brought nothing: name them, and readable channels like them. */
  private async checkNoData(): Promise<void> {
    if (this.disposed || !this.emptyChannels().length) return;
    let readable: string[] = [];
    try {
      const t = this.opts.token;
      const token = typeof t === "function" ? await t() : t;
      const res = await fetch(new URL("channels", baseUrl(this.opts.url)).toString(), {
        headers: { Authorization: `Bearer ${token}` }, cache: "no-store",
      });
      if (res.ok) readable = ((await res.json()).channels as { ch: string }[]).map((c) => c.ch).sort();
    } catch {
      /* no list: the notice names the channel alone */
    }
    this.readable = readable;
    const empty = this.emptyChannels();
    if (!this.disposed && empty.length) this.notice("noData", noDataText(empty, readable));
  }

  /** The channels followed that have brought no message yet. */
  private emptyChannels(): string[] {
    return (this.client ? Object.keys(this.client.sync.initial) : []).filter((ch) => !this.fieldsOf.has(ch));
  }

  /** Track the fields each channel carries; clear or update the notices they answer. */
  private noteFields(envs: Envelope[]): void {
    let fresh = false;
    for (const env of envs) {
      let fs = this.fieldsOf.get(env.ch);
      if (!fs) {
        this.fieldsOf.set(env.ch, (fs = new Set()));
        fresh = true;
      }
      let nums = this.numericOf.get(env.ch);
      if (!nums) this.numericOf.set(env.ch, (nums = new Set()));
      for (const f in env.data) {
        fs.add(f);
        if (typeof env.data[f] === "number") nums.add(f);
      }
    }
    if (fresh && this.notices.noData) {
      // Data came to a channel that had none: it goes live; name only those still empty.
      const empty = this.emptyChannels();
      this.notice("noData", empty.length ? noDataText(empty, this.readable) : null);
    }
    const wanted = [...(this.opts.fields ?? []), ...(this.opts.x ? [this.opts.x] : [])];
    if (wanted.length) this.notice("fields", missingFieldsText(wanted, this.fieldsOf, 12, this.numericOf));
  }

  private add(envs: Envelope[]): void {
    this.noteFields(envs);
    if (this.host) {
      for (const env of envs) {
        for (const f in env.data) {
          if (this.seenFields.has(f)) continue;
          this.seenFields.add(f);
          const g = groupOf(f);
          if (g && !this.groups.has(g.key)) this.addGroup(g.key);
        }
      }
    }
    const epochOf = (ch: string) => this.client?.sync.epochOf(ch) ?? "";
    for (const c of this.charts) c.add(envs, epochOf);
    for (const env of envs) {
      if (this.olderAsked.has(env.ch)) continue;
      this.olderAsked.add(env.ch);
      void this.loadOlder(env.ch);
    }
  }

  private get timeAxis(): boolean {
    return !this.opts.x;
  }

  private get window(): number | null {
    return this.opts.window === undefined ? 300 : this.opts.window;
  }

  /**
   * The window reaches further back than what the live subscription brought: load the
   * older part from history (downsampled by the server when long), under the live data.
   */
  private async loadOlder(ch: string): Promise<void> {
    const win = this.window;
    if (!this.timeAxis && win !== null) return; // a data-field axis shows what arrives
    const held = this.charts.map((c) => c.oldestTs(ch)).filter((t): t is number => t !== null);
    if (!held.length || !this.client) return;
    const to = Math.min(...held);
    const from = win === null ? null : Date.now() / 1000 - win;
    if (from !== null && to <= from) return;
    await this.fetchInto(ch, from, to);
  }

  private async fetchInto(ch: string, from: number | null, to: number): Promise<void> {
    const client = this.client;
    if (!client || this.disposed) return;
    try {
      const token = await client.token();
      const ans = await fetchRange((p, q) => client.endpoint(p, q), token, ch, from, to, HISTORY_POINTS);
      if (!ans || this.disposed) return;
      const epoch = client.sync.epochOf(ch);
      if (ans.epoch && epoch && ans.epoch !== epoch) return; // another numbering: not this chart's past
      for (const c of this.charts) c.addOlder(ch, ans.msgs, epoch);
      const ranges = (this.thin.get(ch) ?? []).flatMap(([a, b]) => cut(a, b, from ?? -Infinity, to));
      if (ans.downsampled) ranges.push([from ?? (ans.msgs[0]?.ts ?? to), to]);
      this.thin.set(ch, ranges);
    } catch {
      /* the server is away: the live part still shows */
    }
  }

  /** Zoomed into a part that came thinned: fetch it again, at the resolution of the zoom. */
  private async zoomed(range: [number, number] | null): Promise<void> {
    if (!range || !this.timeAxis) return;
    for (const [ch, ranges] of this.thin) {
      for (const [a, b] of overlaps(ranges, range[0], range[1])) await this.fetchInto(ch, a, b);
    }
  }

  /** A host group's chart, placed in the groups' order above the main chart. */
  private addGroup(key: string): void {
    const g = HOST_GROUPS.find((h) => h.key === key)!;
    const name = this.opts.title ?? this.opts.channels.join(", ");
    const chart = new Chart(this.parent, {
      ...this.opts,
      title: `${name} · ${g.title}`,
      units: g.units,
      height: Math.min(this.opts.height ?? 300, 180),
      accept: g.test,
      onZoom: (r) => void this.zoomed(r),
      hidden: (_ch, f) => g.hidden?.(f) ?? false,
    });
    chart.root.dataset.group = key;
    const after = HOST_GROUPS.slice(HOST_GROUPS.indexOf(g) + 1).map((h) => this.groups.get(h.key)).find(Boolean);
    this.parent.insertBefore(chart.root, after ? after.root : this.chart.root);
    this.groups.set(key, chart);
    this.charts.splice(this.charts.length - 1, 0, chart);
    this.chart.root.classList.add("pulseboard-rest");
    if (this.lastStatus) chart.setStatus(this.lastStatus);
  }

  /** Read-only, for tests: the client behind the chart. */
  private expose(): void {
    Object.defineProperty(this.chart.root, "__pulseboardClient", { value: this.client, configurable: true });
  }

  private goneLive(): void {
    this.wasLive = true;
    this.opts.onLive?.();
  }

  dispose(): void {
    this.disposed = true;
    if (this.discover) clearInterval(this.discover);
    this.colors?.dispose();
    if (this.noDataTimer) clearTimeout(this.noDataTimer);
    this.client?.dispose();
    for (const c of this.charts) c.destroy();
  }
}
