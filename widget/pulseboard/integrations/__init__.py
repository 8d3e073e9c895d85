"""Framework integrations. Each lives in its own module and imports its framework only there:

- `pulseboard.integrations.keras.PulseboardCallback`: Keras 3 (any backend).

`pulseboard.LogHandler` (Python `logging`) is in the top-level package.
"""
