// The anywidget glue: read the model's traits, mount a live chart, write a throttled,
// bounded snapshot back so saved widget state (and exported notebooks) hold the data.

import { Chart } from "./chart";
import type { Snapshot } from "./chart";
import { LiveChart, injectStyles } from "./live";

interface Model {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  on(event: string, cb: () => void): void;
  off(event?: string | null, cb?: (() => void) | null): void;
}

const SNAPSHOT_EVERY_MS = 2000;
const SNAPSHOT_ROWS = 1000;
const SNAPSHOT_CELLS = 20_000; // rows x series: keeps the saved state small

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  injectStyles(el.ownerDocument);
  let live: LiveChart | null = null;
  let still: Chart | null = null;
  let timer: ReturnType<typeof setInterval> | null = null;

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
  });

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
    const saved = model.get("snapshot") as Snapshot | null;
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
      // Read the token at each (re)connect so Python can hand out a fresh one.
      token: () => String(model.get("token") ?? ""),
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
        model.set("snapshot", live.chart.snapshot(Math.min(SNAPSHOT_ROWS, Math.floor(SNAPSHOT_CELLS / series))));
        model.save_changes();
      }
    }, SNAPSHOT_EVERY_MS);
  };

  const names = ["channels", "fields", "window", "max_points", "title", "height", "x", "units", "theme", "url", "problem",
    "smoothing", "log_y", "thresholds"];
  const restart = () => start();
  // A new token is read at the next (re)connect; a client that gave up on the old one starts over.
  const retoken = () => {
    if (live?.client?.error) start();
  };
  for (const n of names) model.on(`change:${n}`, restart);
  model.on("change:token", retoken);
  start();
  return () => {
    for (const n of names) model.off(`change:${n}`, restart);
    model.off("change:token", retoken);
    stop();
  };
}

export default { render };
