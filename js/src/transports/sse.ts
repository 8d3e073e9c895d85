// The SSE adapter: a one-time ticket, then an EventSource resumed through its event ids.

import { TOKEN_EXPIRED, authFailure, channelParams } from "./common";
import type { Connection, ConnectionHooks, EndInfo, Frame, TransportHost } from "./common";

export async function openSse(client: TransportHost, token: string, hooks: ConnectionHooks): Promise<Connection> {
  const channels = Object.keys(client.sync.initial);
  const res = await fetch(client.endpoint("ticket"), {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ ch: channels }),
  });
  if (!res.ok) await authFailure(res, "ticket", token);
  const { ticket } = (await res.json()) as { ticket: string };
  const params = channelParams(client);
  params.set("ticket", ticket);
  const es = new EventSource(client.endpoint("sse", params));
  let ended = false;
  let idle: ReturnType<typeof setTimeout> | null = null;
  const end = (info: EndInfo) => {
    if (ended) return;
    ended = true;
    if (idle) clearTimeout(idle);
    es.close();
    hooks.onEnd(info);
  };
  // The server sends a `: ping` comment at least every 15 s, which EventSource hides;
  // a quiet stream is still resumed exactly, so reopening after a long silence is safe.
  const touch = () => {
    if (idle) clearTimeout(idle);
    idle = setTimeout(() => end({ reason: "sse stream silent" }), 60_000);
  };
  touch();
  const deliver = (data: string, op?: string) => {
    if (ended) return;
    touch();
    let obj: unknown;
    try {
      obj = JSON.parse(data);
    } catch {
      return;
    }
    if (op) {
      const ctl: Record<string, unknown> = { ...(obj as Record<string, unknown>), op };
      if (op === "close") {
        end({ code: Number(ctl.code), reason: String(ctl.detail ?? ""), authExpired: Number(ctl.code) === TOKEN_EXPIRED });
        return;
      }
      hooks.onFrame(ctl);
    } else {
      hooks.onFrame(obj as Frame);
    }
  };
  es.onmessage = (ev) => deliver(ev.data as string);
  for (const name of ["subscribed", "reset", "error", "close"]) {
    es.addEventListener(name, (ev) => deliver((ev as MessageEvent).data as string, name));
  }
  es.onerror = () => end({ reason: "sse stream ended" });
  return {
    kind: "sse",
    gotFirst: false,
    close() {
      end({});
    },
  };
}
