// The runs table: one row per run ([data-run=<name>], data-status), status, start, duration,
// the config keys that differ between runs, and last/min/max of the metrics. Sortable by any
// column, filterable by status and by text (`lr=0.01`, `tag:baseline`, a name); clicking a row
// selects it (the widget hands the selection to a linked chart). Updates are batched to one
// animation frame and touch only the rows that changed, so a table of 1,000 live runs stays cheap.

import {
  MetricStats, STATUSES, compare, differingKeys, duration, flatConfig, fmtDuration, fmtStart, fmtValue, matches,
} from "./model";
import type { Filter, RunRecord, Scalar, Status } from "./model";

export interface Column {
  key: string;
  label: string;
  value: (r: RunRecord, cfg: Record<string, Scalar>, now: number) => Scalar | undefined;
  text?: (v: Scalar | undefined) => string;
  live?: boolean; // changes with time (duration)
}

export interface TableSnapshot {
  columns: string[];
  rows: { name: string; status: string; cells: string[] }[];
  selected: string[];
}

const FRAME_LOG = 2000;

export class RunsTable {
  readonly root: HTMLDivElement;
  readonly stats: MetricStats;
  selected = new Set<string>();
  onSelect: (names: string[]) => void = () => {};
  /** Milliseconds of work per frame (newest last), for benches. */
  readonly frames: number[] = [];
  private runs = new Map<string, RunRecord>();
  private sigs = new Map<string, string>(); // what a row shows of its record besides `updated`
  private hidden = new Set<string>(); // rows the filter hides
  private lastSort = 0;
  private cfg = new Map<string, Record<string, Scalar>>();
  private rows = new Map<string, HTMLTableRowElement>();
  private columns: Column[] = [];
  private colKey = "";
  private colsDirty = true;
  private dirty = new Set<string>();
  private dirtyMetrics = new Set<string>(); // rows whose metric cells only changed
  private metricFrom = 0; // index of the first metric column
  private allDirty = true;
  private order: string[] = [];
  private sortBy = "start";
  private sortDesc = true;
  private filter: Filter = { status: "", text: "" };
  private raf = 0;
  private ticker: ReturnType<typeof setInterval>;
  // Rows in (or near) the scrolled view: only they get their metrics and durations written as
  // they change; the others are marked stale and written when they scroll into view.
  private visible = new Set<string>();
  private stale = new Set<string>();
  private observer: IntersectionObserver | null = null;
  private readonly thead: HTMLTableSectionElement;
  private readonly tbody: HTMLTableSectionElement;
  private readonly count: HTMLSpanElement;
  private readonly message: HTMLDivElement;

  constructor(parent: HTMLElement, metrics: string[] | null, private title = "") {
    const doc = parent.ownerDocument;
    this.stats = new MetricStats(metrics);
    this.root = doc.createElement("div");
    this.root.className = "pulseboard-runs";
    const bar = doc.createElement("div");
    bar.className = "pulseboard-runs-bar";
    const heading = doc.createElement("span");
    heading.className = "pulseboard-runs-title";
    heading.textContent = title;
    const status = doc.createElement("select");
    status.dataset.filter = "status";
    for (const s of ["", ...STATUSES]) {
      const o = doc.createElement("option");
      o.value = s;
      o.textContent = s || "any status";
      status.appendChild(o);
    }
    status.onchange = () => this.setFilter({ ...this.filter, status: status.value as Status | "" });
    const text = doc.createElement("input");
    text.dataset.filter = "text";
    text.placeholder = "filter: lr=0.01 tag:baseline name";
    text.oninput = () => this.setFilter({ ...this.filter, text: text.value });
    const clear = doc.createElement("button");
    clear.dataset.action = "clear-selection";
    clear.textContent = "show all";
    clear.title = "clear the selection: the linked chart draws every run";
    clear.onclick = () => this.select([]);
    this.count = doc.createElement("span");
    this.count.className = "pulseboard-runs-count";
    bar.append(heading, status, text, clear, this.count);
    this.message = doc.createElement("div");
    this.message.className = "pulseboard-runs-message";
    const scroll = doc.createElement("div");
    scroll.className = "pulseboard-runs-scroll";
    const table = doc.createElement("table");
    this.thead = table.createTHead();
    this.tbody = table.createTBody();
    this.tbody.onclick = (e) => {
      const tr = (e.target as HTMLElement).closest("tr");
      const name = tr?.dataset.run;
      if (!name) return;
      const next = new Set(this.selected);
      if (next.has(name)) next.delete(name);
      else next.add(name);
      this.select([...next]);
    };
    this.thead.onclick = (e) => {
      const th = (e.target as HTMLElement).closest("th");
      const key = th?.dataset.col;
      if (!key) return;
      if (this.sortBy === key) this.sortDesc = !this.sortDesc;
      else [this.sortBy, this.sortDesc] = [key, key === "start"];
      this.allDirty = true;
      this.schedule();
    };
    scroll.appendChild(table);
    this.root.append(bar, this.message, scroll);
    if (typeof IntersectionObserver !== "undefined") {
      this.observer = new IntersectionObserver((entries) => {
        for (const e of entries) {
          const name = (e.target as HTMLElement).dataset.run;
          if (name === undefined) continue;
          if (!e.isIntersecting) {
            this.visible.delete(name);
            continue;
          }
          this.visible.add(name);
          if (this.stale.delete(name)) {
            this.dirty.add(name);
            this.schedule();
          }
        }
      }, { root: scroll, rootMargin: "200px 0px" });
    }
    parent.appendChild(this.root);
    Object.defineProperty(this.root, "__pulseboardRuns", { value: this, configurable: true });
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  showMessage(text: string): void {
    this.message.textContent = text;
    this.root.dataset.problem = text ? "1" : "";
  }

  select(names: string[]): void {
    const before = this.selected;
    this.selected = new Set(names.filter((n) => this.runs.has(n) || before.has(n)));
    for (const n of new Set([...before, ...this.selected])) this.dirty.add(n);
    this.schedule();
    this.onSelect([...this.selected]);
  }

  setFilter(f: Filter): void {
    this.filter = f;
    this.allDirty = true;
    this.schedule();
  }

  /** The project's records as `GET runs` gave them (the whole list: runs missing are gone). */
  setRuns(list: RunRecord[]): void {
    const seen = new Set<string>();
    for (const r of list) {
      seen.add(r.name);
      const cfgText = JSON.stringify(r.config);
      const sig = `${r.status}\u0000${r.end}\u0000${r.start}\u0000${r.tags.join("\u0000")}\u0000${cfgText}`;
      const old = this.sigs.get(r.name);
      this.runs.set(r.name, r);
      // A heartbeat only moves `updated`: the row shows nothing of it (durations tick by themselves).
      if (old === sig) continue;
      this.sigs.set(r.name, sig);
      if (old === undefined || old.slice(old.lastIndexOf("\u0000") + 1) !== cfgText) {
        this.cfg.set(r.name, flatConfig(r.config));
        this.colsDirty = true;
      }
      this.dirty.add(r.name);
    }
    for (const name of [...this.runs.keys()]) {
      if (seen.has(name)) continue;
      this.runs.delete(name);
      this.cfg.delete(name);
      this.sigs.delete(name);
      this.hidden.delete(name);
      this.visible.delete(name);
      this.stale.delete(name);
      const gone = this.rows.get(name);
      if (gone) {
        this.observer?.unobserve(gone);
        gone.remove();
      }
      this.rows.delete(name);
      this.allDirty = this.colsDirty = true;
    }
    this.schedule();
  }

  /** Envelopes of the runs' channels: their metrics' last/min/max. */
  addEnvelopes(envs: { ch: string; data: Record<string, unknown> }[]): void {
    for (const ch of this.stats.add(envs)) {
      const name = this.nameOf(ch);
      if (name !== null) this.dirtyMetrics.add(name);
    }
    this.schedule();
  }

  /** A channel's numbering restarted (deleted, history lost): its figures start again. */
  resetChannel(ch: string): void {
    this.stats.reset(ch);
    const name = this.nameOf(ch);
    if (name !== null) this.dirty.add(name);
    this.schedule();
  }

  private nameOf(ch: string): string | null {
    const dot = ch.indexOf(".");
    return dot < 0 ? null : ch.slice(dot + 1);
  }

  runNames(): string[] {
    return [...this.runs.keys()];
  }

  records(): RunRecord[] {
    return [...this.runs.values()];
  }

  private buildColumns(): Column[] {
    const cols: Column[] = [
      { key: "name", label: "run", value: (r) => r.name },
      { key: "status", label: "status", value: (r) => r.status },
      { key: "start", label: "start", value: (r) => r.start, text: (v) => (typeof v === "number" ? fmtStart(v) : "") },
      { key: "duration", label: "duration", value: (r, _c, now) => duration(r, now),
        text: (v) => (typeof v === "number" ? fmtDuration(v) : ""), live: true },
    ];
    for (const k of differingKeys([...this.cfg.values()])) {
      cols.push({ key: `config:${k}`, label: k, value: (_r, c) => c[k] });
    }
    for (const m of this.stats.names()) {
      for (const which of ["last", "min", "max"] as const) {
        cols.push({ key: `metric:${m}:${which}`, label: `${m} ${which}`, value: (r) => this.stats.get(r.channel, m)?.[which] });
      }
    }
    return cols;
  }

  /** Once a second: the running runs' durations (that one cell each). */
  private tick(): void {
    const t0 = performance.now();
    const i = this.columns.findIndex((c) => c.key === "duration");
    if (i < 0) return;
    const col = this.columns[i];
    const now = Date.now() / 1000;
    for (const [name, r] of this.runs) {
      if (r.status !== "running") continue;
      if (!this.shown(name)) {
        this.stale.add(name);
        continue;
      }
      const cell = this.rows.get(name)?.cells[i];
      const text = col.text!(col.value(r, {}, now));
      if (cell && cell.textContent !== text) cell.textContent = text;
    }
    this.log(performance.now() - t0);
  }

  private log(ms: number): void {
    this.frames.push(ms);
    if (this.frames.length > FRAME_LOG) this.frames.splice(0, this.frames.length - FRAME_LOG);
  }

  private schedule(): void {
    if (this.raf) return;
    this.raf = requestAnimationFrame(() => {
      this.raf = 0;
      this.frame();
    });
  }

  /** One frame: columns if they changed, the dirty rows' cells, visibility, order. */
  frame(): void {
    const t0 = performance.now();
    if (this.colsDirty || this.stats.fresh) {
      this.colsDirty = this.stats.fresh = false;
      const cols = this.buildColumns();
      const key = cols.map((c) => c.key).join("\u0000");
      if (key !== this.colKey) {
        this.colKey = key;
        this.columns = cols;
        this.metricFrom = cols.findIndex((c) => c.key.startsWith("metric:"));
        if (this.metricFrom < 0) this.metricFrom = cols.length;
        this.header();
        this.allDirty = true;
      }
    }
    const now = Date.now() / 1000;
    const names = this.allDirty ? [...this.runs.keys()] : [...this.dirty].filter((n) => this.runs.has(n));
    const sortCol = this.columns.find((c) => c.key === this.sortBy);
    let reorder = this.allDirty;
    for (const name of names) {
      const r = this.runs.get(name)!;
      let tr = this.rows.get(name);
      if (!tr || tr.cells.length !== this.columns.length) {
        if (tr) {
          this.observer?.unobserve(tr);
          tr.remove();
        }
        tr = this.row(name);
        reorder = true;
      }
      this.fill(tr, r, now);
    }
    let metricsMoved = 0;
    for (const name of this.dirtyMetrics) {
      if (this.dirty.has(name) || this.allDirty) continue;
      if (!this.shown(name)) {
        this.stale.add(name);
        continue;
      }
      const r = this.runs.get(name);
      const tr = this.rows.get(name);
      if (!r || !tr || tr.cells.length !== this.columns.length) continue;
      this.fillCells(tr, r, this.cfg.get(name) ?? {}, now, this.metricFrom);
      metricsMoved++;
    }
    this.dirtyMetrics.clear();
    // Start and name never change: rows only move when runs come or go. Other columns (metrics,
    // status, duration) move rows at most twice a second, so a busy table does not jump.
    const moving = names.length + metricsMoved > 0 && this.sortBy !== "start" && this.sortBy !== "name";
    if (reorder || (moving && t0 - this.lastSort > 500)) {
      this.lastSort = t0;
      this.arrange(sortCol, now);
    } else if (moving) this.schedule();
    this.dirty.clear();
    this.allDirty = false;
    const shown = this.runs.size - this.hidden.size;
    this.count.textContent = `${shown} of ${this.runs.size} runs` + (this.selected.size ? ` · ${this.selected.size} selected` : "");
    this.root.dataset.runs = String(this.runs.size);
    this.root.dataset.selected = [...this.selected].join(",");
    if (!this.runs.size && !this.message.textContent) this.count.textContent = "no runs yet";
    this.log(performance.now() - t0);
  }

  private header(): void {
    const doc = this.root.ownerDocument;
    const tr = doc.createElement("tr");
    for (const c of this.columns) {
      const th = doc.createElement("th");
      th.dataset.col = c.key;
      th.textContent = c.label;
      th.title = `sort by ${c.label}`;
      if (c.key.startsWith("config:")) th.className = "pulseboard-runs-config";
      tr.appendChild(th);
    }
    this.thead.replaceChildren(tr);
  }

  private row(name: string): HTMLTableRowElement {
    const doc = this.root.ownerDocument;
    const tr = doc.createElement("tr");
    tr.dataset.run = name;
    for (const c of this.columns) {
      const td = doc.createElement("td");
      td.dataset.col = c.key;
      tr.appendChild(td);
    }
    this.rows.set(name, tr);
    this.observer?.observe(tr);
    return tr;
  }

  private fill(tr: HTMLTableRowElement, r: RunRecord, now: number): void {
    const cfg = this.cfg.get(r.name) ?? {};
    if (tr.dataset.status !== r.status) tr.dataset.status = r.status;
    const sel = this.selected.has(r.name);
    if (tr.classList.contains("selected") !== sel) {
      tr.classList.toggle("selected", sel);
      tr.setAttribute("aria-selected", String(sel));
    }
    this.fillCells(tr, r, cfg, now, 0);
    const show = matches(r, cfg, this.filter);
    if (show === this.hidden.has(r.name)) {
      if (show) this.hidden.delete(r.name);
      else this.hidden.add(r.name);
      tr.style.display = show ? "" : "none";
    }
  }

  /** Whether the row is in view (always, where nothing reports visibility). */
  private shown(name: string): boolean {
    return this.observer === null || this.visible.has(name);
  }

  private fillCells(tr: HTMLTableRowElement, r: RunRecord, cfg: Record<string, Scalar>, now: number, from: number): void {
    const cells = tr.cells;
    for (let i = from; i < this.columns.length; i++) {
      const c = this.columns[i];
      const v = c.value(r, cfg, now);
      const text = c.text ? c.text(v) : fmtValue(v);
      if (cells[i].textContent !== text) cells[i].textContent = text;
    }
  }

  private arrange(sortCol: Column | undefined, now: number): void {
    const names = [...this.runs.keys()];
    if (sortCol) {
      const vals = new Map(names.map((n) => [n, sortCol.value(this.runs.get(n)!, this.cfg.get(n) ?? {}, now)]));
      const sign = this.sortDesc ? -1 : 1;
      names.sort((a, b) => sign * compare(vals.get(a), vals.get(b)) || a.localeCompare(b));
    }
    const same = names.length === this.order.length && names.every((n, i) => n === this.order[i]) &&
      this.tbody.childElementCount === names.length;
    this.order = names;
    if (!same) this.tbody.append(...names.map((n) => this.rows.get(n)!));
    for (const th of Array.from(this.thead.querySelectorAll("th"))) {
      const k = (th as HTMLElement).dataset.col;
      (th as HTMLElement).dataset.sort = k === this.sortBy ? (this.sortDesc ? "desc" : "asc") : "";
    }
  }

  /** What the table shows, for saved notebooks and reports (visible rows, in order). */
  snapshot(maxRows = 2000): TableSnapshot {
    const now = Date.now() / 1000;
    const rows = [];
    for (const name of this.order) {
      const r = this.runs.get(name);
      const tr = this.rows.get(name);
      if (!r || !tr || this.hidden.has(name)) continue;
      const cfg = this.cfg.get(name) ?? {};
      rows.push({ name, status: r.status, cells: this.columns.map((c) => (c.text ? c.text(c.value(r, cfg, now)) : fmtValue(c.value(r, cfg, now)))) });
      if (rows.length >= maxRows) break;
    }
    return { columns: this.columns.map((c) => c.label), rows, selected: [...this.selected] };
  }

  destroy(): void {
    this.observer?.disconnect();
    clearInterval(this.ticker);
    if (this.raf) cancelAnimationFrame(this.raf);
    this.root.remove();
  }
}
