// What the transport adapters share: the connection shape, the close table, auth failures.

import closes from "../../../widget/pulseboard/closes.json";
import { jwtExp } from "../sync";
import type { ChannelPositions } from "../sync";

export type TransportKind = "ws" | "sse" | "poll";
export type Frame = Record<string, unknown> | unknown[];

/** How a connection ended; the client decides what to do next. */
export interface EndInfo {
  code?: number;
  reason?: string;
  fatal?: string;
  authExpired?: boolean;
}

/** One open attempt over one transport; reports frames and its end to the client. */
export interface Connection {
  kind: TransportKind;
  /** A frame (control op or data array) arrived. */
  gotFirst: boolean;
  close(): void;
  send?(op: Record<string, unknown>): boolean;
}

export interface ConnectionHooks {
  onFrame(frame: Frame): void;
  onEnd(info: EndInfo): void;
}

/** What an adapter needs from the client: URLs, the token, the channels' positions. */
export interface TransportHost {
  readonly sync: ChannelPositions;
  endpoint(path: string, params?: URLSearchParams): string;
  token(): Promise<string>;
}

/** The named close values, shared with the server (widget/pulseboard/closes.json). */
export const CLOSES: Record<string, { code: number; reason: string; retry: boolean }> = closes;
export const TOKEN_EXPIRED = CLOSES.token_expired.code;
/** Close codes after which reconnecting cannot help. */
export const FATAL_CLOSE = new Set(Object.values(CLOSES).filter((c) => !c.retry).map((c) => c.code));

export class FatalError extends Error {}
/** The server refused a token that has expired: get a new one and resume. */
export class ExpiredError extends Error {}

export function expired(token: string): boolean {
  const exp = jwtExp(token);
  return exp !== null && exp <= Date.now() / 1000 + 1;
}

export async function authFailure(res: Response, what: string, token?: string): Promise<never> {
  let detail = `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { detail?: string };
    if (body.detail) detail = body.detail;
  } catch {
    /* not JSON */
  }
  if (res.status === 401 && token !== undefined && expired(token)) throw new ExpiredError(detail);
  if (res.status === 401 || res.status === 403) throw new FatalError(`the server refused the token: ${detail}`);
  throw new Error(`${what} failed: ${detail}`);
}

/** `ch` (repeated), `backfill` and the resume cursor for the HTTP transports. */
export function channelParams(host: TransportHost): URLSearchParams {
  const params = new URLSearchParams();
  const backfills: number[] = [];
  for (const [ch, start] of Object.entries(host.sync.initial)) {
    params.append("ch", ch);
    if (start && "backfill" in start && !(ch in host.sync.positions)) backfills.push(start.backfill);
  }
  if (Object.keys(host.sync.positions).length) params.set("last_event_id", host.sync.cursor());
  if (backfills.length) params.set("backfill", String(Math.max(...backfills)));
  return params;
}
