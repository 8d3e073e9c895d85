// The transport fallback's vectors (tests/vectors/fallback.json): events in, exact actions and
// state out, with no timers or sockets; client.ts carries out the same actions for real.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { errorOf, initialState, reasonOf, step, transportOf } from "../src/fallback";
import type { Action, FallbackConfig, FallbackEvent, FallbackState } from "../src/fallback";
import { FATAL_CLOSE } from "../src/transports/common";

interface Step {
  event: FallbackEvent;
  actions: Action[];
  expect: Record<string, unknown>;
}
interface Case {
  name: string;
  config: Partial<FallbackConfig>;
  steps: Step[];
}

const vectors = JSON.parse(
  readFileSync(new URL("../../tests/vectors/fallback.json", import.meta.url), "utf8"),
) as { defaults: Omit<FallbackConfig, "fatalCodes">; cases: Case[] };

/** The state as the vectors name it: the fields, plus what client.ts derives from them. */
function view(s: FallbackState, cfg: FallbackConfig): Record<string, unknown> {
  return { ...s, transport: transportOf(s, cfg), error: errorOf(s), reason: reasonOf(s) };
}

describe("transport fallback vectors", () => {
  it("cover the fatal close codes of closes.json", () => {
    expect([...FATAL_CLOSE].sort()).toEqual([4003, 4400]);
  });

  it.each(vectors.cases)("$name", (c) => {
    const cfg: FallbackConfig = { ...vectors.defaults, ...c.config, fatalCodes: [...FATAL_CLOSE] };
    let state = initialState();
    c.steps.forEach((s, i) => {
      const before = state;
      const [next, actions] = step(state, s.event, cfg);
      const where = `step ${i + 1} (${JSON.stringify(s.event)})`;
      expect(actions, where).toEqual(s.actions);
      expect(view(next, cfg), where).toMatchObject(s.expect);
      // An event that changes nothing leaves the very same state (the client then stays quiet).
      if (!actions.length && JSON.stringify(next) === JSON.stringify(before)) expect(next, where).toBe(before);
      state = next;
    });
  });
});
