// A runs table fed by a server: `GET runs?project=` every few seconds (records and statuses),
// and the runs' channels through one client (metrics, live). Also the run colours of a chart
// coloured by a config value (`LiveChart(color_by=...)`).

import { Client, baseUrl } from "../client";
import type { TokenSource } from "../client";
import type { Gap } from "../sync";
import { colorsBy } from "./model";
import type { RunRecord } from "./model";
import { RunsTable } from "./table";

export const RUNS_EVERY_MS = 2000;
/** Run channels one table follows for metrics (the newest runs first); the server's per-connection limit is 1000. */
export const MAX_RUN_CHANNELS = 1000;
/** Messages per run read on subscribing, for min/max over what history holds. */
export const RUN_BACKFILL = 1000;

async function tokenOf(t: TokenSource): Promise<string> {
  return typeof t === "function" ? await t() : t;
}

/** The records of `project` the token may read; throws with the server's reason. */
export async function fetchRuns(url: string, token: TokenSource, project: string): Promise<RunRecord[]> {
  const u = new URL("runs", baseUrl(url));
  u.searchParams.set("project", project);
  const res = await fetch(u.toString(), { headers: { Authorization: `Bearer ${await tokenOf(token)}` }, cache: "no-store" });
  if (!res.ok) {
    let detail = `${res.status}`;
    try {
      detail = (await res.json()).detail ?? detail;
    } catch {
      /* not JSON */
    }
    throw new Error(detail);
  }
  return (await res.json()).runs as RunRecord[];
}

export interface LiveRunsOptions {
  url: string;
  token: TokenSource;
  project: string;
  metrics: string[] | null;
  onRuns?: (runs: RunRecord[]) => void;
  every?: number;
}

export class LiveRuns {
  readonly table: RunsTable;
  client: Client | null = null;
  private timer: ReturnType<typeof setInterval>;
  private disposed = false;
  private followed = new Set<string>();

  constructor(parent: HTMLElement, private opts: LiveRunsOptions) {
    this.table = new RunsTable(parent, opts.metrics, opts.project);
    void this.poll();
    this.timer = setInterval(() => void this.poll(), opts.every ?? RUNS_EVERY_MS);
  }

  private async poll(): Promise<void> {
    let runs: RunRecord[];
    try {
      runs = await fetchRuns(this.opts.url, this.opts.token, this.opts.project);
    } catch (e) {
      if (!this.disposed) this.table.showMessage(`runs not available: ${(e as Error).message}`);
      return;
    }
    if (this.disposed) return;
    this.table.showMessage("");
    this.table.setRuns(runs);
    this.opts.onRuns?.(runs);
    this.follow(runs);
  }

  /** Subscribe to the channels of runs not followed yet (newest first, up to the limit). */
  private follow(runs: RunRecord[]): void {
    const room = MAX_RUN_CHANNELS - this.followed.size;
    if (room <= 0) return;
    const fresh = runs.filter((r) => !this.followed.has(r.channel)).sort((a, b) => b.start - a.start).slice(0, room);
    if (!fresh.length) return;
    for (const r of fresh) this.followed.add(r.channel);
    const start = Object.fromEntries(fresh.map((r) => [r.channel, { backfill: RUN_BACKFILL }]));
    if (this.client) {
      this.client.addChannels(start);
      return;
    }
    this.client = new Client({
      url: this.opts.url,
      token: this.opts.token,
      channels: start,
      onEnvelopes: (envs) => this.table.addEnvelopes(envs),
      onGap: (gap: Gap) => {
        // A new numbering (the channel was deleted, or the memory broker restarted): its figures start again.
        if (gap.reason === "numbering restarted" || gap.reason === "epoch changed") this.table.resetChannel(gap.ch);
      },
    });
  }

  dispose(): void {
    this.disposed = true;
    clearInterval(this.timer);
    this.client?.dispose();
    this.table.destroy();
  }
}

/**
 * Colours for a chart's runs by one config value, looked up every few seconds for the projects
 * of the chart's channels (`train.*` -> project `train`); calls `apply` when they change.
 */
export class RunColors {
  private timer: ReturnType<typeof setInterval>;
  private last = "";

  constructor(
    private url: string,
    private token: TokenSource,
    channels: string[],
    private key: string,
    private apply: (colors: Map<string, string>) => void,
    every = RUNS_EVERY_MS * 2.5,
  ) {
    const projects = [...new Set(channels.map((c) => c.split(".")[0]).filter((p) => /^[A-Za-z0-9_:-]+$/.test(p)))];
    const look = async () => {
      const all: RunRecord[] = [];
      for (const p of projects) {
        try {
          all.push(...(await fetchRuns(this.url, this.token, p)));
        } catch {
          /* not readable now: try again later */
        }
      }
      const colors = colorsBy(all, this.key);
      const sig = JSON.stringify([...colors]);
      if (sig !== this.last) {
        this.last = sig;
        this.apply(colors);
      }
    };
    void look();
    this.timer = setInterval(() => void look(), every);
  }

  dispose(): void {
    clearInterval(this.timer);
  }
}
