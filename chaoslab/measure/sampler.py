"""The measuring instrument: requests to the VIP at a fixed interval, from the client.

Run at the client's vantage point (the provider wraps the command), it sends
one request every interval on a fresh connection, without waiting for slow
ones (a bounded pool keeps timeouts from stretching the schedule), and writes
one JSON line per request as it completes. It is bounded in count and time
and stops by itself, or at SIGTERM / SIGINT.

    python -m chaoslab.measure.sampler --output samples.jsonl --target '{"url": "http://VIP:PORT/", ...}' \
        [--interval 0.01] [--timeout 1]
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

from chaoslab.measure.client import Outcome, instrument_parser, parsed_target
from chaoslab.measure.load import Endpoint, request_fresh

SPARE_WORKERS = 16


def pool_size(interval: float, timeout: float) -> int:
    """Workers enough that requests timing out never hold up the schedule: one per
    interval of the timeout, and some spare."""
    return math.ceil(timeout / interval) + SPARE_WORKERS

class Sampler:
    """Calls `request` once per slot of `interval` seconds, each on a worker of its own, and writes
    each outcome as one JSON line. A slot that finds every worker busy is skipped, never made up
    later: the schedule stays one request per interval, with no burst after a stall."""

    def __init__(self, request: Callable[[], Outcome], output: Path, interval: float, timeout: float,
                 max_duration: float, max_count: int | None = None, workers: int | None = None):
        self.request = request
        self.output = output
        self.interval = interval
        self.timeout = timeout
        self.max_duration = max_duration
        self.max_count = max_count if max_count is not None else math.floor(max_duration / interval) + 1
        self.stopping = threading.Event()
        self.write_lock = threading.Lock()
        self.workers = workers or pool_size(interval, timeout)
        self.in_flight = threading.BoundedSemaphore(self.workers)
        self.skipped = 0

    def stop(self, *_: object) -> None:
        self.stopping.set()

    def _measure(self, handle: TextIO) -> None:
        try:
            line = json.dumps(self.request().to_json(), separators=(",", ":"))
            with self.write_lock:
                handle.write(line + "\n")
                handle.flush()
        finally:
            self.in_flight.release()

    def run(self) -> int:
        """Sample until stopped, max_count requests or max_duration seconds; return the count sent."""
        sent = 0
        start = time.perf_counter()
        with open(self.output, "a", encoding="utf-8") as handle, \
                ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sample") as pool:
            for slot in itertools.count():
                if self.stopping.is_set() or sent >= self.max_count or slot * self.interval > self.max_duration:
                    break
                delay = start + slot * self.interval - time.perf_counter()
                if delay > 0 and self.stopping.wait(delay):
                    break
                if not self.in_flight.acquire(blocking=False):
                    self.skipped += 1  # every worker is busy: this slot is lost, the next one keeps time
                    continue
                pool.submit(self._measure, handle)
                sent += 1
        return sent


def main(argv: list[str] | None = None) -> int:
    parser = instrument_parser("Sample the VIP at a fixed interval.")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between requests (default 0.01)")
    parser.add_argument("--max-count", type=int, help="stop after this many requests (default: one per interval of "
                                                       "--max-duration)")
    args = parser.parse_args(argv)
    if not 0.001 <= args.interval <= 60 or not 0 < args.timeout <= 10 or not 0 < args.max_duration <= 86400:
        parser.error("interval must be within 0.001..60 s, timeout within 0..10 s, max-duration within 0..86400 s")
    target = parsed_target(parser, args.target)
    endpoint = Endpoint(target, args.timeout)
    sampler = Sampler(lambda: request_fresh(endpoint, target), args.output, args.interval, args.timeout,
                      args.max_duration, args.max_count)
    signal.signal(signal.SIGTERM, sampler.stop)
    signal.signal(signal.SIGINT, sampler.stop)
    sampler.run()
    if sampler.skipped:
        print(f"sampler: {sampler.skipped} slots skipped: all {sampler.workers} workers were busy", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
