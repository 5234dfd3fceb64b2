"""Each run's own folder under results/, never overwritten, written atomically."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from chaoslab.paths import results_dir

JOURNAL = "journal.json"
SAMPLES = "samples.jsonl"
LOAD = "load.jsonl"  # the keep-alive clients' requests, when a run has a load
EVENTS = "events.jsonl"
SUMMARY = "summary.json"
CHART = "downtime.png"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "run"


def create_run_dir(name: str, root: Path | None = None) -> Path:
    """A new folder <UTC time>-<name>; a clash gets a numeric suffix, never a reuse."""
    root = root or results_dir()
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = f"{stamp}-{slug(name)}"
    for attempt in range(1000):
        path = root / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"cannot create a run folder under {root}")


def write_json(path: Path, data: object) -> Path:
    """Write JSON atomically: a reader sees the old file or the whole new one."""
    return write_atomically(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def write_atomically(path: Path, data: bytes) -> Path:
    """Write a file atomically (a reader, a CI job or node_exporter, sees the old file or the whole
    new one), readable by all as results are."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
    return path
