"""A local SMTP sink for the email benchmark: accepts every message, counts them, stores nothing.

    .venv/bin/python bench/smtp_sink.py --port 2525 --count-file var/bench/sink.count

The count is written to ``--count-file`` every half second and at exit, so the benchmark (another
process) reads what arrived. Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.n += len(envelope.rcpt_tos)
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count-file", required=True)
    args = parser.parse_args()
    counter, path = Counter(), Path(args.count_file)
    controller = Controller(counter, hostname=args.host, port=args.port)
    controller.start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while not stopping.wait(0.5):
        path.write_text(str(counter.n))
    controller.stop()
    path.write_text(str(counter.n))
    time.sleep(0.1)


if __name__ == "__main__":
    main()
