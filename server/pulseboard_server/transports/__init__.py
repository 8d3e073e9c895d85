"""Transports: WebSocket, Server-Sent Events, long-poll. Each is thin glue over the node."""
