// The WebSocket adapter: subscribe on open, ping when idle, report frames and the close.

import { TOKEN_EXPIRED } from "./common";
import type { Connection, ConnectionHooks, EndInfo, Frame, TransportHost } from "./common";

const OPEN_TIMEOUT_MS = 5_000;

export function openWs(
  client: TransportHost, token: string, hooks: ConnectionHooks, pingMs: number, pongMs: number,
): Connection {
  const url = new URL(client.endpoint("ws"));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url.toString(), ["pulseboard.v1", `bearer.${token}`]);
  let lastRx = Date.now();
  let pinged = false;
  let ended = false;
  const conn: Connection = {
    kind: "ws",
    gotFirst: false,
    close() {
      end({});
      ws.close(1000);
    },
    send(op) {
      if (ws.readyState !== WebSocket.OPEN) return false;
      ws.send(JSON.stringify(op));
      return true;
    },
  };
  const opened = Date.now();
  const beat = setInterval(() => {
    const idle = Date.now() - lastRx;
    if (ws.readyState === WebSocket.CONNECTING && Date.now() - opened > OPEN_TIMEOUT_MS) {
      // A proxy that swallows the upgrade never fails it: count it as a failure to open.
      end({ reason: "websocket did not open" });
      ws.close();
      return;
    }
    if (ws.readyState !== WebSocket.OPEN) return;
    if (pinged && idle > pingMs + pongMs) {
      end({ reason: "no pong: connection is dead" });
      ws.close();
    } else if (!pinged && idle > pingMs) {
      pinged = true;
      ws.send('{"op":"ping"}');
    }
  }, Math.max(250, Math.min(pingMs, pongMs) / 2));
  const end = (info: EndInfo) => {
    if (ended) return;
    ended = true;
    clearInterval(beat);
    hooks.onEnd(info);
  };
  ws.onopen = () => {
    lastRx = Date.now();
    ws.send(JSON.stringify(client.sync.subscribeOp()));
  };
  ws.onmessage = (ev: MessageEvent) => {
    lastRx = Date.now();
    pinged = false;
    if (ended) return;
    let frame: Frame;
    try {
      frame = JSON.parse(String(ev.data)) as Frame;
    } catch {
      return;
    }
    hooks.onFrame(frame);
  };
  ws.onclose = (ev: CloseEvent) => {
    end({ code: ev.code, reason: ev.reason, authExpired: ev.code === TOKEN_EXPIRED });
  };
  ws.onerror = () => {
    /* onclose follows */
  };
  return conn;
}
