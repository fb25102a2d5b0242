"""A stand-in for ``meterline up`` in process tests: starts one local service, prints its pid, waits.

``python -m tests.integration.meterline.service_host <kafka|mosquitto> <data dir> <port> <port2>
<die_with_parent 0|1> [cluster id]``. The test then SIGKILLs this process, as the kernel's
out-of-memory killer would, and looks at what became of the service.
"""

from __future__ import annotations

import sys
from pathlib import Path

from meterline.local import processes
from meterline.local.kafka import LocalKafka
from meterline.local.mosquitto import LocalMosquitto


def main(argv: list[str]) -> None:
    kind, data_dir, port, port2, die_with_parent, *rest = argv
    processes.die_with_parent = die_with_parent == "1"
    service: LocalKafka | LocalMosquitto
    if kind == "kafka":
        service = LocalKafka(Path(data_dir), port=int(port), controller_port=int(port2),
                             cluster_id=rest[0] if rest else None, heap="256m")
    else:
        service = LocalMosquitto(Path(data_dir), port=int(port), tls_port=int(port2))
    service.start()
    print(f"pid {service.pid}", flush=True)
    sys.stdin.read()  # until the test kills us (or closes our stdin)
    service.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
