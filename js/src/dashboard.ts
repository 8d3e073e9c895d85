// The standalone dashboard at the server's base path: token from `#token=...`,
// channels from `&ch=...` (default: every `sys.*` channel the token may read). A
// pattern (`&ch=train.*`, or typed in the pattern box) gets one chart of every matching run:
// against `step` when the runs' messages carry it (`&x=` overrides, `&x=time` for time), with
// the fields picked in the field picker (`&y=loss&y=acc`; by default every field but the
// step-like ones). Editing the fragment by hand updates the view.

import { STEP_LIKE } from "./chart/format";
import { LiveChart, injectStyles } from "./live";
import { isPattern } from "./chart/glob";
import { isHostChart } from "./chart/hostgroup";
import { mountRunsPanels } from "./runs/panel";

interface ChannelInfo {
  ch: string;
  epoch: string;
  seq: number;
}

/** Fields that become a pattern chart's x when its runs' messages carry one. */
const AUTO_X = ["step", "global_step"];

interface Fragment {
  token: string;
  chs: string[];
  x: string | null;
  y: string[];
  params: URLSearchParams;
}

function fragment(): Fragment {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  return { token: params.get("token") ?? "", chs: params.getAll("ch"), x: params.get("x") || null, y: params.getAll("y"), params };
}

function note(root: HTMLElement, text: string): void {
  const p = document.createElement("p");
  p.className = "pb-note";
  p.textContent = text;
  root.replaceChildren(p);
}

/** Options for tests and embedders: `window.PULSEBOARD_OPTIONS = {client: {upgradeInterval: 2000}}`. */
function extraOptions(): Record<string, any> {
  return ((window as any).PULSEBOARD_OPTIONS as Record<string, any>) ?? {};
}

async function main(): Promise<void> {
  injectStyles();
  const root = document.getElementById("charts")!;
  const picker = document.getElementById("picker")!;
  const patternBox = document.getElementById("pattern") as HTMLInputElement | null;
  const first = fragment();
  const { token } = first;
  let { chs, x } = first;
  const asked = first.params;
  let ySel = new Set(first.y);
  if (!token) {
    note(root, "no token: open this page as …/#token=<jwt> (the server prints a ready link; `pulseboard token` makes one)");
    return;
  }
  mountRunsPanels(root, token, asked); // `&runs=PROJECT`: runs tables (runs/panel.ts)
  let channels: ChannelInfo[] = [];
  try {
    const res = await fetch("channels", { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
    const body = await res.json();
    if (!res.ok) {
      note(root, `the server refused the token: ${body.detail ?? res.status}`);
      return;
    }
    channels = body.channels as ChannelInfo[];
  } catch (e) {
    note(root, `cannot reach the server: ${String(e)}`);
    return;
  }
  const names = [...new Set([...channels.map((c) => c.ch), ...chs])].sort();
  const chosen = new Set(chs.length ? chs : names.filter((n) => n.startsWith("sys.")));
  const charts = new Map<string, LiveChart>();
  const extra = extraOptions();
  // The field picker: every numeric field the pattern charts' runs carry.
  const fieldsEl = document.createElement("div");
  fieldsEl.id = "fields";
  fieldsEl.className = "pb-fields";
  fieldsEl.hidden = true;
  fieldsEl.setAttribute("aria-label", "fields plotted in the pattern charts");
  fieldsEl.style.cssText = "display:flex;flex-wrap:wrap;gap:4px 12px;font-size:13px;padding:6px 20px 0";
  root.before(fieldsEl);
  const fieldsSeen = new Set<string>();
  const plotted = (f: string) => (ySel.size ? ySel.has(f) : !STEP_LIKE.has(f));
  const fieldBox = (f: string) => {
    if (fieldsSeen.has(f)) return;
    fieldsSeen.add(f);
    if (!fieldsEl.childElementCount) fieldsEl.append("fields:");
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = f;
    box.checked = plotted(f);
    box.addEventListener("change", () => {
      ySel = new Set([...fieldsEl.querySelectorAll<HTMLInputElement>("input")].filter((b) => b.checked).map((b) => b.value));
      if (!ySel.size) ySel = new Set(["-"]); // nothing picked: an empty chart, not the default
      redraw(isPattern);
    });
    label.append(box, " " + f);
    const after = [...fieldsEl.querySelectorAll("label")].find((l) => (l.textContent ?? "").trim() > f);
    fieldsEl.insertBefore(label, after ?? null);
    fieldsEl.hidden = false;
  };
  /** Charts whose options changed are made again (with the data read again). */
  const redraw = (which: (ch: string) => boolean) => {
    for (const [ch, chart] of charts) {
      if (!which(ch)) continue;
      chart.dispose();
      charts.delete(ch);
    }
    sync();
  };

  const sync = () => {
    for (const [ch, chart] of charts) {
      if (!chosen.has(ch)) {
        chart.dispose();
        charts.delete(ch);
      }
    }
    for (const ch of names.filter((n) => chosen.has(n))) {
      if (charts.has(ch)) continue;
      const slot = document.createElement("section");
      slot.className = "pb-slot";
      slot.dataset.channel = ch;
      if (isHostChart([ch], null)) slot.classList.add("pb-host");
      if (isPattern(ch)) slot.classList.add("pb-pattern");
      const before = [...root.querySelectorAll<HTMLElement>(".pb-slot")].find((s) => (s.dataset.channel ?? "") > ch);
      root.insertBefore(slot, before ?? null);
      const chart = new LiveChart(slot, {
        channels: [ch],
        title: ch,
        height: 260,
        window: 300,
        url: "./",
        token,
        hidden: (_c, field) => /\.\d+$/.test(field),
        // Pattern charts (runs) go against `step` when their messages carry it (`&x=` picks
        // another field, `&x=time` keeps time), and plot the picked fields.
        ...(isPattern(ch) ? {
          x: x === "time" ? null : x,
          autoX: x ? null : AUTO_X,
          accept: plotted,
          onField: fieldBox,
        } : { x: null }),
        ...extra,
      });
      const dispose = chart.dispose.bind(chart);
      chart.dispose = () => {
        dispose();
        slot.remove();
      };
      charts.set(ch, chart);
    }
    if (!chosen.size) {
      note(root, names.length ? "no channel chosen: pick one above"
        : "no channels yet: publish to one (`pulseboard publish CH '{\"v\": 1}'`) or run the host collector");
    }
    else root.querySelector(".pb-note")?.remove();
    const params = new URLSearchParams({ token });
    for (const ch of chosen) params.append("ch", ch);
    if (x) params.set("x", x);
    for (const f of [...ySel].sort()) params.append("y", f);
    for (const k of ["runs", "color_by"]) for (const v of asked.getAll(k)) params.append(k, v);
    for (const box of fieldsEl.querySelectorAll<HTMLInputElement>("input")) box.checked = plotted(box.value);
    const hash = "#" + params.toString();
    if (hash !== location.hash) history.replaceState(null, "", hash);
  };

  const addBox = (ch: string) => {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = ch;
    box.checked = chosen.has(ch);
    box.addEventListener("change", () => {
      if (box.checked) chosen.add(ch);
      else chosen.delete(ch);
      sync();
    });
    label.append(box, " " + ch);
    picker.appendChild(label);
  };
  picker.replaceChildren();
  for (const ch of names) addBox(ch);
  sync();
  patternBox?.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter") return;
    const pattern = patternBox.value.trim();
    if (!pattern || !/^[A-Za-z0-9_.:/*?-]{1,200}$/.test(pattern)) {
      patternBox.setCustomValidity("a channel or pattern such as train.*");
      patternBox.reportValidity();
      return;
    }
    patternBox.setCustomValidity("");
    patternBox.value = "";
    if (!names.includes(pattern)) {
      names.push(pattern);
      names.sort();
      addBox(pattern);
    }
    chosen.add(pattern);
    for (const box of picker.querySelectorAll<HTMLInputElement>("input")) box.checked = chosen.has(box.value);
    sync();
  });
  // Channels that appear later join the picker (and the charts, when on the default sys.* view).
  const refresh = setInterval(async () => {
    try {
      const res = await fetch("channels", { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
      if (!res.ok) return;
      const fresh = ((await res.json()).channels as ChannelInfo[]).map((c) => c.ch).filter((c) => !names.includes(c));
      if (!fresh.length) return;
      for (const ch of fresh.sort()) {
        names.push(ch);
        if (!chs.length && ch.startsWith("sys.")) chosen.add(ch);
        addBox(ch);
      }
      names.sort();
      sync();
    } catch {
      /* the server is away; the charts say so */
    }
  }, 10_000);
  window.addEventListener("pagehide", () => clearInterval(refresh));
  // The fragment edited by hand (or a link followed): show what it names now.
  window.addEventListener("hashchange", () => {
    const f = fragment();
    if (f.token !== token) {
      location.reload(); // another identity: start over
      return;
    }
    const xChanged = f.x !== x;
    const yChanged = [...new Set(f.y)].sort().join() !== [...ySel].sort().join();
    chs = f.chs;
    x = f.x;
    ySel = new Set(f.y);
    chosen.clear();
    for (const ch of chs.length ? chs : names.filter((n) => n.startsWith("sys."))) chosen.add(ch);
    for (const ch of chosen) {
      if (names.includes(ch)) continue;
      names.push(ch);
      addBox(ch);
    }
    names.sort();
    for (const box of picker.querySelectorAll<HTMLInputElement>("input")) box.checked = chosen.has(box.value);
    if (xChanged || yChanged) redraw(isPattern);
    else sync();
  });
  (window as any).__pulseboard = {
    charts: () => [...charts.keys()],
    chart: (ch: string) => charts.get(ch),
  };
}

void main();
