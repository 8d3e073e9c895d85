import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { KERNEL_WAIT_MS, KernelToken, NO_KERNEL } from "../src/kernel_token";

function jwt(exp: number): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256" })}.${b64({ sub: "t", exp })}.sig`;
}

class FakeModel {
  sent: any[] = [];
  handlers: Array<(msg: any) => void> = [];
  answer: ((msg: any) => any) | null = null;
  send(msg: unknown): void {
    this.sent.push(msg);
    const reply = this.answer?.(msg);
    if (reply) this.deliver(reply);
  }
  on(_e: string, cb: (msg: any) => void): void { this.handlers.push(cb); }
  off(_e?: string | null, cb?: ((msg: any) => void) | null): void { this.handlers = this.handlers.filter((h) => h !== cb); }
  deliver(msg: any): void { for (const h of this.handlers) h(msg); }
}

describe("KernelToken", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());
  const now = () => Date.now() / 1000;

  it("asks the kernel and keeps the answer until close to expiry", async () => {
    const model = new FakeModel();
    const t1 = jwt(now() + 100);
    model.answer = () => ({ type: "token", token: t1 });
    const box = new KernelToken(model);
    expect(await box.get()).toBe(t1);
    expect(model.sent).toEqual([{ type: "token-request", exp: null }]);
    expect(await box.get()).toBe(t1);
    expect(model.sent.length).toBe(1);
    // 80 s later, 20 s of 100 are left: ask for a newer one, saying which exp it holds.
    vi.advanceTimersByTime(80_000);
    const t2 = jwt(now() + 100);
    model.answer = () => ({ type: "token", token: t2 });
    expect(await box.get()).toBe(t2);
    expect(model.sent[1]).toEqual({ type: "token-request", exp: JSON.parse(Buffer.from(t1.split(".")[1], "base64url").toString()).exp });
  });

  it("takes tokens the kernel pushes, and tells whoever wants to know", async () => {
    const model = new FakeModel();
    const pushed = vi.fn();
    const box = new KernelToken(model, pushed);
    const t = jwt(now() + 3600);
    model.deliver({ type: "token", token: t });
    expect(pushed).toHaveBeenCalledTimes(1);
    expect(await box.get()).toBe(t);
    expect(model.sent).toEqual([]);
  });

  it("says there is no kernel when nothing answers", async () => {
    const model = new FakeModel();
    const box = new KernelToken(model);
    const got = box.get();
    vi.advanceTimersByTime(KERNEL_WAIT_MS + 1);
    await expect(got).rejects.toThrow(NO_KERNEL);
    expect(model.sent.length).toBeGreaterThan(1); // asked again while waiting
  });

  it("passes on the kernel's error", async () => {
    const model = new FakeModel();
    model.answer = () => ({ type: "token", error: "not allowed: token may not read 'x'" });
    await expect(new KernelToken(model).get()).rejects.toThrow("not allowed");
  });

  it("keeps a still-valid token when the kernel is busy", async () => {
    const model = new FakeModel();
    const t = jwt(now() + 100);
    const box = new KernelToken(model);
    model.deliver({ type: "token", token: t });
    vi.advanceTimersByTime(80_000); // 20 s left: asks, and the busy kernel says nothing
    const got = box.get();
    vi.advanceTimersByTime(KERNEL_WAIT_MS + 1); // 5 s left: the old token still works
    expect(await got).toBe(t);
    expect(model.sent.length).toBeGreaterThan(1);
  });
});
