// The long-poll adapter: one request at a time, each resuming from the last answer's cursor.

import type { Envelope } from "../sync";
import { ExpiredError, FatalError, authFailure, channelParams } from "./common";
import type { Connection, ConnectionHooks, EndInfo, TransportHost } from "./common";

export function openPoll(client: TransportHost, hooks: ConnectionHooks): Connection {
  const ctl = new AbortController();
  let ended = false;
  const end = (info: EndInfo) => {
    if (ended) return;
    ended = true;
    ctl.abort();
    hooks.onEnd(info);
  };
  const loop = async () => {
    let cursor: string | null = null;
    while (!ended) {
      const params = channelParams(client);
      params.delete("last_event_id");
      const resume = cursor ?? (Object.keys(client.sync.positions).length ? client.sync.cursor() : null);
      if (resume) params.set("cursor", resume);
      const timer = setTimeout(() => ctl.abort(), 40_000);
      let body: { cursor: string; msgs: Envelope[]; ops?: Record<string, unknown>[] };
      try {
        const token = await client.token();
        const res = await fetch(client.endpoint("poll", params), {
          headers: { Authorization: `Bearer ${token}` },
          cache: "no-store",
          signal: ctl.signal,
        });
        if (!res.ok) await authFailure(res, "poll", token);
        body = (await res.json()) as typeof body;
      } catch (e) {
        if (e instanceof ExpiredError) end({ authExpired: true });
        else end(e instanceof FatalError ? { fatal: e.message } : { reason: String(e) });
        return;
      } finally {
        clearTimeout(timer);
      }
      if (ended) return;
      for (const op of body.ops ?? []) hooks.onFrame(op);
      if (body.msgs.length || !conn.gotFirst) hooks.onFrame(body.msgs);
      cursor = body.cursor;
    }
  };
  const conn: Connection = {
    kind: "poll",
    gotFirst: false,
    close() {
      end({});
    },
  };
  void loop();
  return conn;
}
