// A chart fed by a client: the piece the widget and the dashboard both mount.

import { Chart } from "./chart";
import type { ChartOptions } from "./chart";
import { Client } from "./client";
import type { ClientOptions } from "./client";
import css from "./styles.css";
import uplotCss from "uplot/dist/uPlot.min.css";

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
}

export class LiveChart {
  readonly chart: Chart;
  readonly client: Client;
  private wasLive = false;

  constructor(parent: HTMLElement, opts: LiveOptions) {
    injectStyles(parent.ownerDocument);
    this.chart = new Chart(parent, opts);
    const backfill = opts.backfill ?? Math.min(opts.maxPoints ?? 20_000, Math.ceil((opts.window ?? 300) * 20));
    const channels = Object.fromEntries(opts.channels.map((ch) => [ch, { backfill }]));
    this.client = new Client({
      url: opts.url,
      token: opts.token,
      channels,
      ...opts.client,
      onEnvelopes: (envs) => {
        if (!this.wasLive) this.goneLive(opts);
        this.chart.add(envs, (ch) => this.client.sync.epochOf(ch));
      },
      onGap: (gap) => this.chart.gap(gap),
      onState: (c) => {
        if (c.status === "live" && !this.wasLive) this.goneLive(opts);
        this.chart.setStatus(c);
      },
    });
    this.expose();
  }

  /** Read-only, for tests: the client behind the chart. */
  private expose(): void {
    Object.defineProperty(this.chart.root, "__pulseboardClient", { value: this.client, configurable: true });
  }

  private goneLive(opts: LiveOptions): void {
    this.wasLive = true;
    opts.onLive?.();
  }

  dispose(): void {
    this.client.dispose();
    this.chart.destroy();
  }
}
