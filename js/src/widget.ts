// The anywidget glue: read the model's traits, mount a live chart, write a throttled,
// bounded snapshot back so saved widget state (and exported notebooks) hold the data, and hide
// the chart's static SVG output where the live chart runs.

import { Chart } from "./chart";
import type { Snapshot, ViewState } from "./chart";
import { LiveChart, injectStyles } from "./live";
import { KernelToken } from "./kernel_token";
import type { TransportKind } from "./client";

export interface Model {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  send(content: unknown): void;
  on(event: string, cb: (...args: any[]) => void): void;
  off(event?: string | null, cb?: ((...args: any[]) => void) | null): void;
}

const SNAPSHOT_EVERY_MS = 2000;
const SNAPSHOT_ROWS = 1000;
const SNAPSHOT_CELLS = 20_000; // rows x series: keeps the saved state small

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  injectStyles(el.ownerDocument);
  let live: LiveChart | null = null;
  let still: Chart | null = null;
  let echoing = false; // saveView is writing this view's own change to the traits
  let timer: ReturnType<typeof setInterval> | null = null;
  let channelsChanged = false; // set by a change of `channels`, read by the next start()
  // The token arrives in a message from the kernel; a client that gave up without one starts over.
  const tokens = new KernelToken(model, () => {
    if (live?.client?.error) start();
  });

  const options = () => ({
    channels: (model.get("channels") as string[]) ?? [],
    fields: (model.get("fields") as string[] | null) ?? null,
    window: model.get("window") === null ? null : Number(model.get("window") ?? 300),
    maxPoints: Number(model.get("max_points") ?? 200_000),
    title: (model.get("title") as string | null) ?? null,
    height: Number(model.get("height") ?? 300),
    x: (model.get("x") as string | null) || null,
    units: (model.get("units") as string | Record<string, string> | null) ?? null,
    theme: (model.get("theme") as "auto" | "light" | "dark") ?? "auto",
    smoothing: Number(model.get("smoothing") ?? 0),
    logY: Boolean(model.get("log_y") ?? false),
    thresholds: (model.get("thresholds") as Record<string, number> | null) ?? null,
    zoom: (model.get("zoom") as [number, number] | null) ?? null,
    hidden: (ch: string, field: string) => {
      const names = (model.get("hidden") as string[] | null) ?? [];
      return names.includes(field) || names.includes(`${ch} · ${field}`);
    },
    // What a person sets in the browser goes back to the Python traits (and into saved notebooks,
    // snapshots and reports: docs/reports.md).
    onView: (v: ViewState) => {
      // This view's own change, written back: not a change from Python to apply (with a group
      // of charts, as for a host channel, each would restart the others, round and round).
      echoing = true;
      try {
        saveView(model, v);
      } finally {
        echoing = false;
      }
    },
    colorBy: (model.get("color_by") as string | null) || null,
  });
  const shown = (): Chart | null => live?.chart ?? still;

  const stop = () => {
    if (timer) clearInterval(timer);
    timer = null;
    live?.dispose();
    still?.destroy();
    live = still = null;
  };

  const start = () => {
    stop();
    const opts = options();
    const url = (model.get("url") as string) || "";
    const problem = (model.get("problem") as string) || "";
    // (`snapshot`: the key in notebooks saved before the kernel took snapshots)
    // A saved snapshot belongs to the channels it was taken of: after `channels` changed (a runs
    // table linked to this chart selected other runs) it would bring the old runs back.
    const saved = channelsChanged ? null : (model.get("_snapshot") ?? model.get("snapshot") ?? null) as Snapshot | null;
    channelsChanged = false;
    hideStatic(el.ownerDocument, String(model.get("_static_id") ?? ""));
    if (problem || !url) {
      // No server to talk to: say so, and show what was saved, if anything.
      still = new Chart(el, opts);
      still.setStatus({
        status: "offline", transport: "ws", lag: null, rate: 0,
        error: problem || "no server configured: pass url= and token= to LiveChart or set PULSEBOARD_URL and PULSEBOARD_TOKEN",
      });
      if (saved) still.loadSnapshot(saved);
      else (still.root.querySelector(".pulseboard-plot") as HTMLElement).style.minHeight = "0";
      return;
    }
    let showingSnapshot = false;
    live = new LiveChart(el, {
      ...opts,
      url,
      // Asked for at each (re)connect and before expiry; the kernel hands out fresh ones.
      token: tokens.get,
      // The kernel relay (via="kernel", or the fallback when no direct transport opens).
      client: { kernel: model, transports: transportsFor(String(model.get("via") ?? "")) },
      onLive: () => {
        if (showingSnapshot) live?.chart.clear();
        showingSnapshot = false;
      },
    });
    if (saved && saved.x?.length) {
      live.chart.loadSnapshot(saved);
      showingSnapshot = true;
    }
    let lastStatus = "";
    let lastPoints = -1;
    timer = setInterval(() => {
      const c = live?.client;
      if (!live || !c) return;
      if (c.status !== lastStatus) {
        lastStatus = c.status;
        model.set("status", c.status);
        model.set("error", c.error ?? "");
        model.save_changes();
      }
      const points = live.chart.held() + live.chart.frames;
      if (!showingSnapshot && points !== lastPoints) {
        lastPoints = points;
        const series = Math.max(1, live.chart.seriesCount());
        const mine = live.chart.snapshot(Math.min(SNAPSHOT_ROWS, Math.floor(SNAPSHOT_CELLS / series)));
        if (supersedes(mine, model.get("_snapshot") as KernelSnapshot | null)) {
          model.set("_snapshot", mine);
          model.save_changes();
        }
      }
    }, SNAPSHOT_EVERY_MS);
  };

  const names = ["channels", "fields", "window", "max_points", "title", "height", "x", "units", "theme", "url", "problem",
    "thresholds", "via", "color_by"];
  const restart = () => start();
  const newChannels = () => {
    channelsChanged = true;
  };
  model.on("change:channels", newChannels); // (before `restart`, which is also bound to it)
  for (const n of names) model.on(`change:${n}`, restart);
  // The view traits, set from Python (or echoed back from this view): applied in place.
  const applyView = () => {
    if (echoing) return;
    const c = shown();
    if (!c) return;
    const want = options();
    const now = c.view();
    if (want.smoothing !== now.smoothing) c.setSmoothing(want.smoothing);
    if (want.logY !== now.logY) c.setLog(want.logY);
    if (JSON.stringify(want.zoom) !== JSON.stringify(now.zoom)) c.setZoom(want.zoom);
    const hidden = ((model.get("hidden") as string[] | null) ?? []).slice().sort();
    if (JSON.stringify(hidden) !== JSON.stringify(now.hidden.slice().sort()) && now.hidden.length + hidden.length) start();
  };
  const viewNames = ["smoothing", "log_y", "zoom", "hidden"];
  for (const n of viewNames) model.on(`change:${n}`, applyView);
  start();
  return () => {
    for (const n of names) model.off(`change:${n}`, restart);
    for (const n of viewNames) model.off(`change:${n}`, applyView);
    model.off("change:channels", newChannels);
    tokens.dispose();
    stop();
  };
}

/** `via`: "kernel" only the relay; "direct" never; "" direct first, the relay as a fallback. */
export function transportsFor(via: string): TransportKind[] {
  if (via === "kernel") return ["kernel"];
  if (via === "direct") return ["ws", "sse", "poll"];
  return ["ws", "sse", "poll", "kernel"];
}

// --- snapshots and the static rendering (reports) -----------------------------------------

/** Write the view set in the browser to the traits that differ, in one save. */
export function saveView(model: Model, v: ViewState): void {
  const next: Record<string, unknown> = { smoothing: v.smoothing, log_y: v.logY, zoom: v.zoom, hidden: v.hidden };
  let changed = false;
  for (const [k, val] of Object.entries(next)) {
    if (JSON.stringify(model.get(k) ?? null) === JSON.stringify(val)) continue;
    model.set(k, val);
    changed = true;
  }
  if (changed) model.save_changes();
}

interface KernelSnapshot extends Snapshot {
  source?: string;
}

/** The browser's snapshot replaces the kernel's (read from history, the whole range) only
 * once it holds newer data; otherwise the kernel's stays, as it covers more. */
export function supersedes(mine: Snapshot, saved: KernelSnapshot | null): boolean {
  if (!saved || saved.source !== "kernel" || !saved.x?.length) return true;
  if (!mine.x.length) return false;
  return mine.x[mine.x.length - 1] > saved.x[saved.x.length - 1];
}

/** Where the live chart runs, hide its static SVG output (the one for notebook viewers). */
export function hideStatic(doc: Document, id: string): void {
  if (!/^pulseboard-[0-9a-f]{1,32}$/.test(id) || doc.getElementById(`${id}-hide`)) return;
  const style = doc.createElement("style");
  style.id = `${id}-hide`;
  const sel = `[data-pulseboard-static="${id}"]`;
  style.textContent = `${sel}{display:none!important}.jp-OutputArea-child:has(${sel}){display:none!important}`;
  doc.head.appendChild(style);
}

export default { render };
