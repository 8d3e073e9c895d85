// The dashboard's runs panel: `#token=...&runs=train` (repeatable) puts a live runs table of
// project `train` above the charts, with a chart of its runs under it (`&color_by=lr` colours
// them by a config value). Clicking rows makes that chart draw the selected runs only.

import { LiveChart } from "../live";
import { LiveRuns } from "./live";
import css from "./runs.css";

export function mountRunsPanels(before: HTMLElement, token: string, params: URLSearchParams): void {
  const projects = params.getAll("runs").filter((p) => /^[A-Za-z0-9_:-]{1,100}$/.test(p));
  if (!projects.length) return;
  const doc = before.ownerDocument;
  if (!doc.getElementById("pulseboard-runs-styles")) {
    const style = doc.createElement("style");
    style.id = "pulseboard-runs-styles";
    style.textContent = css;
    doc.head.appendChild(style);
  }
  const colorBy = params.get("color_by");
  const x = params.get("x") ?? "step";
  for (const project of projects) {
    const panel = doc.createElement("section");
    panel.className = "pb-runs-panel";
    panel.dataset.project = project;
    before.parentElement!.insertBefore(panel, before);
    const table = doc.createElement("div");
    const plot = doc.createElement("div");
    panel.append(table, plot);
    const runs = new LiveRuns(table, { url: "./", token, project, metrics: null });
    let chart: LiveChart | null = null;
    const draw = (names: string[]) => {
      chart?.dispose();
      plot.replaceChildren();
      const channels = names.length ? names.map((n) => `${project}.${n}`) : [`${project}.*`];
      chart = new LiveChart(plot, { channels, title: `${project}: ${names.length ? names.join(", ") : "every run"}`,
        height: 260, window: null, url: "./", token, x, colorBy });
    };
    runs.table.onSelect = draw;
    draw([]);
  }
}
