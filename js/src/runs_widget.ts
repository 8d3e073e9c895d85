// The anywidget glue of `Runs(project, metrics)`: a live runs table; a click selects runs and
// writes `selected` and `selected_channels` (what a linked LiveChart draws, see Runs.link); the
// table's content goes into `_snapshot` every few seconds so saved notebooks and reports hold it.

import { KernelToken } from "./kernel_token";
import { hideStatic } from "./widget";
import type { Model } from "./widget";
import { LiveRuns } from "./runs/live";
import type { TableSnapshot } from "./runs/table";
import { RunsTable } from "./runs/table";
import css from "./runs/runs.css";

const SNAPSHOT_EVERY_MS = 3000;

export function injectRunsStyles(doc: Document): void {
  if (doc.getElementById("pulseboard-runs-styles")) return;
  const style = doc.createElement("style");
  style.id = "pulseboard-runs-styles";
  style.textContent = css;
  doc.head.appendChild(style);
}

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  injectRunsStyles(el.ownerDocument);
  let live: LiveRuns | null = null;
  let still: RunsTable | null = null;
  let timer: ReturnType<typeof setInterval> | null = null;
  const tokens = new KernelToken(model, () => {
    if (!live) start();
  });
  const project = () => String(model.get("project") ?? "");

  const stop = () => {
    if (timer) clearInterval(timer);
    timer = null;
    live?.dispose();
    still?.destroy();
    live = still = null;
  };

  const onSelect = (names: string[]) => {
    const p = project();
    model.set("selected", names);
    model.set("selected_channels", names.length ? names.map((n) => `${p}.${n}`) : [`${p}.*`]);
    model.save_changes();
  };

  const start = () => {
    stop();
    const url = String(model.get("url") ?? "");
    const problem = String(model.get("problem") ?? "");
    hideStatic(el.ownerDocument, String(model.get("_static_id") ?? ""));
    const metrics = (model.get("metrics") as string[] | null) ?? null;
    if (problem || !url) {
      still = new RunsTable(el, metrics, project());
      still.showMessage(problem || "no server configured: pass url= and token= to Runs or set PULSEBOARD_URL and PULSEBOARD_TOKEN");
      return;
    }
    live = new LiveRuns(el, { url, token: tokens.get, project: project(), metrics });
    live.table.onSelect = onSelect;
    const chosen = (model.get("selected") as string[] | null) ?? [];
    if (chosen.length) live.table.select(chosen);
    let last = "";
    timer = setInterval(() => {
      if (!live) return;
      const snap: TableSnapshot = live.table.snapshot();
      const sig = JSON.stringify(snap);
      if (sig !== last && snap.rows.length) {
        last = sig;
        model.set("_snapshot", { ...snap, source: "browser", taken: Date.now() / 1000 });
        model.save_changes();
      }
    }, SNAPSHOT_EVERY_MS);
  };

  const fromKernel = () => {
    const chosen = (model.get("selected") as string[] | null) ?? [];
    const table = live?.table;
    if (table && chosen.join("\u0000") !== [...table.selected].join("\u0000")) table.select(chosen);
  };
  const names = ["project", "metrics", "url", "problem"];
  const restart = () => start();
  for (const n of names) model.on(`change:${n}`, restart);
  model.on("change:selected", fromKernel);
  start();
  return () => {
    for (const n of names) model.off(`change:${n}`, restart);
    model.off("change:selected", fromKernel);
    tokens.dispose();
    stop();
  };
}

export default { render };
