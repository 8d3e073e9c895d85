"""One harness for tests and benches: servers, tokens, WebSocket helpers, browsers, Jupyter, Hub, notebooks."""
