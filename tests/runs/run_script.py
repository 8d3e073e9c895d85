"""A training process for the run-status tests: `python run_script.py NAME MODE`."""

import sys
import time

import pulseboard

name, mode = sys.argv[1], sys.argv[2]
run = pulseboard.init("proc", name=name, config={"mode": mode})
run.log({"loss": 1.0}, step=0)
if mode == "with-error":
    with pulseboard.init("proc", name=name + "-with") as inner:
        inner.log({"loss": 2.0}, step=0)
        raise RuntimeError("boom inside with")
if mode == "error":
    raise RuntimeError("boom")
if mode in ("wait", "sigterm", "kill"):
    print("ready", flush=True)
    time.sleep(600)
# mode "clean": falls off the end, a clean exit
