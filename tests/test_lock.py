"""The lab's lock for real: processes racing for one lab never hold it at the same time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Each contender takes the lock again and again, notes when it held it, and retries when refused.
CONTENDER = """
import sys, time
from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab
from chaoslab.lab.settings import LabSettings
lab = Lab(LabSettings(prefix="ctlock"))
held, deadline = [], time.monotonic() + float(sys.argv[2])
while len(held) < int(sys.argv[1]) and time.monotonic() < deadline:
    try:
        with lab.lock("contender"):
            entered = time.monotonic()
            time.sleep(0.001)
            held.append((entered, time.monotonic()))
    except ChaoslabError:
        pass
print("\\n".join(f"{start} {end}" for start, end in held))
"""


def test_racing_processes_never_hold_the_lock_together(tmp_path: Path):
    environment = {**os.environ, "CHAOSLAB_STATE_ROOT": str(tmp_path)}
    contenders = [subprocess.Popen([sys.executable, "-c", CONTENDER, "150", "60"], stdout=subprocess.PIPE, text=True,
                                   env=environment) for _ in range(6)]
    intervals = []
    for contender in contenders:
        output, _ = contender.communicate(timeout=120)
        assert contender.returncode == 0
        intervals += [tuple(map(float, line.split())) for line in output.splitlines()]
    assert len(intervals) == 6 * 150, "every contender got the lock as often as it asked"
    intervals.sort()
    overlaps = [(a, b) for a, b in zip(intervals, intervals[1:]) if b[0] < a[1]]
    assert not overlaps, f"{len(overlaps)} times two processes held the lock at once, e.g. {overlaps[0]}"
    assert not list(tmp_path.glob("ctlock.lock")), "the lock file goes with its last holder"
