// The widget's token comes from the kernel in a custom `token` message, never from a synced
// trait, so a saved notebook holds none. The browser asks for one on start and again before
// the one it holds expires; the kernel also pushes fresh ones on its own before expiry.

import { jwtExp } from "./sync";

export interface TokenModel {
  send(content: unknown): void;
  on(event: string, cb: (...args: any[]) => void): void;
  off(event?: string | null, cb?: ((...args: any[]) => void) | null): void;
}

/** How long to wait for the kernel before saying there is none. */
export const KERNEL_WAIT_MS = 15_000;
const ASK_EVERY_MS = 2_000;
/** Ask for a new token once less than this share of its life is left. */
const RENEW_AT = 0.25;

export const NO_KERNEL =
  "no kernel answered for this chart's token: it may be busy (the chart starts when it answers); " +
  "tokens are not saved with notebooks, so a reopened notebook needs its cell run again";

export class KernelToken {
  private token = "";
  private received = 0;
  private waiters: Array<{ resolve: (t: string) => void; reject: (e: Error) => void }> = [];
  private asking: ReturnType<typeof setInterval> | null = null;
  private giveUp: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly model: TokenModel,
    /** Called when a new token arrives (e.g. to restart a client that gave up). */
    private readonly onToken: () => void = () => {},
  ) {
    model.on("msg:custom", this.onMsg);
  }

  private readonly onMsg = (msg: any): void => {
    if (!msg || msg.type !== "token") return;
    if (typeof msg.token === "string" && msg.token) {
      const newer = msg.token !== this.token;
      this.token = msg.token;
      this.received = Date.now() / 1000;
      this.settle((w) => w.resolve(this.token));
      if (newer) this.onToken();
    } else if (typeof msg.error === "string") {
      this.settle((w) => w.reject(new Error(msg.error)));
    }
  };

  private settle(fn: (w: { resolve: (t: string) => void; reject: (e: Error) => void }) => void): void {
    const waiters = this.waiters;
    this.waiters = [];
    if (this.asking) clearInterval(this.asking);
    if (this.giveUp) clearTimeout(this.giveUp);
    this.asking = this.giveUp = null;
    waiters.forEach(fn);
  }

  /** The token held, unless it is close to expiry. */
  private fresh(): string | null {
    if (!this.token) return null;
    const exp = jwtExp(this.token);
    if (exp === null) return this.token;
    const now = Date.now() / 1000;
    return exp - now > Math.max(2, (exp - this.received) * RENEW_AT) ? this.token : null;
  }

  /** A token for the client: the one held, or a newer one from the kernel. */
  get = (): Promise<string> => {
    const held = this.fresh();
    if (held) return Promise.resolve(held);
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      if (this.asking) return;
      const ask = () => {
        try {
          this.model.send({ type: "token-request", exp: this.token ? jwtExp(this.token) : null });
        } catch {
          // No comm (no kernel): the timeout below says so.
        }
      };
      ask();
      this.asking = setInterval(ask, ASK_EVERY_MS);
      this.giveUp = setTimeout(() => {
        const exp = this.token ? jwtExp(this.token) : null;
        // The old token still works for a while: keep using it and ask again later.
        if (this.token && (exp === null || exp > Date.now() / 1000 + 1)) this.settle((w) => w.resolve(this.token));
        else this.settle((w) => w.reject(new Error(NO_KERNEL)));
      }, KERNEL_WAIT_MS);
    });
  };

  dispose(): void {
    this.settle((w) => w.reject(new Error("the chart was closed")));
    this.model.off("msg:custom", this.onMsg);
  }
}
