"""A process that stops badly, for the bounded-stop tests: it hangs, or holds the GIL, once asked to stop.

``python -m tests.integration.meterline.stop_host <hang|gil|signals> <log>``: starts a child
(``sleep``) with ``processes.spawn``, prints ``child <pid>``, then:

* ``hang``: requests the stop and sleeps (a worker that never finishes its flush);
* ``gil``: requests the stop and runs a regular expression that holds the GIL for minutes
  (a C call that does not return; the Python watchdog thread cannot run);
* ``signals``: installs the signal handlers, prints ``ready`` and waits; after the first SIGINT it
  prints ``stopping`` and hangs, so only a second signal ends it. Its deadline is long
  (``SIGNALS_DEADLINE_S``): the watchdog must not end the stop before the test's second signal
  arrives, which on a loaded machine took over the 1 s the short deadline leaves.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from meterline.local import processes
from meterline.local.shutdown import BoundedStop

DEADLINE_S = 4.0  # watchdog after 1 s, faulthandler after 3.5 s
SIGNALS_DEADLINE_S = 60.0  # watchdog after 57 s: only the second signal ends the "signals" stop


def main(scenario: str, log: Path) -> None:
    child = processes.spawn(["sleep", "600"], log)
    print(f"child {child.pid}", flush=True)
    stop = BoundedStop(SIGNALS_DEADLINE_S if scenario == "signals" else DEADLINE_S)
    if scenario == "signals":
        stop.install_signal_handlers()
        try:
            print("ready", flush=True)
            time.sleep(600)  # waits for the test's first signal
        except KeyboardInterrupt:
            print("stopping", flush=True)
        time.sleep(600)  # hangs: only the second signal may end it
    stop.request("test")
    if scenario == "gil":
        re.match(r"(a+)+$", "a" * 64 + "b")
    time.sleep(600)  # a stop that never finishes: the bounded stop must end the process


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
