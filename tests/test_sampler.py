"""The sampler's schedule for real: one request per interval, a slot with no free worker skipped,
never made up by a burst; bounded by default in count as in time."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from chaoslab.measure.analysis import load_samples
from chaoslab.measure.client import Outcome, error_kind
from chaoslab.measure.sampler import Sampler


@pytest.fixture
def stalling_server() -> Iterator[int]:
    """A TCP port on loopback that holds every connection for its first 0.6 s, then drops them all at
    once (every waiting request ends in the same instant) and from then on drops each as it comes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    server.settimeout(0.05)
    held: list[socket.socket] = []
    stopping = threading.Event()

    def serve() -> None:
        release = time.monotonic() + 0.6
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])
            if time.monotonic() > release:
                while held:
                    held.pop().close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stopping.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


def test_a_stalled_schedule_skips_slots_instead_of_bursting(stalling_server: int, tmp_path: Path):
    def request() -> Outcome:
        sent = time.time()
        try:
            requests.get(f"http://127.0.0.1:{stalling_server}/", timeout=2.0)
        except requests.RequestException as error:
            return Outcome(sent, time.time() - sent, error=error_kind(error))
        return Outcome(sent, time.time() - sent, status=200, backend="?")

    interval = 0.02
    sampler = Sampler(request, tmp_path / "samples.jsonl", interval, 2.0, max_duration=1.2, workers=4)
    sent = sampler.run()
    samples = sorted(load_samples(tmp_path / "samples.jsonl"), key=lambda sample: sample.sent)
    assert len(samples) == sent > 10
    assert sampler.skipped > 0, "the workers were all busy while the server held them"
    gaps = [later.sent - earlier.sent for earlier, later in itertools.pairwise(samples)]
    assert min(gaps) > interval / 2, f"requests sent {min(gaps) * 1000:.1f} ms apart: a burst after a stall"


def test_the_default_count_bound_follows_the_interval(tmp_path: Path):
    assert Sampler(lambda: None, tmp_path / "x", 0.001, 1.0, max_duration=900).max_count == 900_001
    assert Sampler(lambda: None, tmp_path / "x", 0.5, 1.0, max_duration=10).max_count == 21
