// The standalone dashboard at the server's base path: token from `#token=...`,
// channels from `&ch=...` (default: every `sys.*` channel the token may read). A
// pattern (`&ch=train.*`, or typed in the pattern box) gets one chart of every matching run.

import { LiveChart, injectStyles } from "./live";
import { isPattern } from "./chart/glob";
import { isHostChart } from "./chart/hostgroup";
import { mountRunsPanels } from "./runs/panel";

interface ChannelInfo {
  ch: string;
  epoch: string;
  seq: number;
}

function fragment(): { token: string; chs: string[]; x: string | null; params: URLSearchParams } {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  return { token: params.get("token") ?? "", chs: params.getAll("ch"), x: params.get("x"), params };
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
  const { token, chs, x, params: asked } = fragment();
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
      root.appendChild(slot);
      const chart = new LiveChart(slot, {
        channels: [ch],
        title: ch,
        height: 260,
        window: 300,
        url: "./",
        token,
        hidden: (_c, field) => /\.\d+$/.test(field),
        // `&x=step` plots pattern charts (runs) against a data field instead of time.
        x: isPattern(ch) ? x : null,
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
    for (const k of ["runs", "color_by"]) for (const v of asked.getAll(k)) params.append(k, v);
    history.replaceState(null, "", "#" + params.toString());
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
  (window as any).__pulseboard = {
    charts: () => [...charts.keys()],
    chart: (ch: string) => charts.get(ch),
  };
}

void main();
