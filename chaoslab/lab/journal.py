"""Reading a host's journal (journald): `journalctl -o json` prints one entry a line."""

from __future__ import annotations

import json


def journal_entries(text: str) -> list[dict]:
    """journalctl -o json's lines as entries; a line cut short (the host went away) is left out."""
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def entry_time(entry: dict) -> float | None:
    """When the entry was logged (unix time, the host's clock): the sender's own stamp where it gave
    one, else journald's; UTC whatever the host's time zone."""
    stamp = entry.get("_SOURCE_REALTIME_TIMESTAMP") or entry.get("__REALTIME_TIMESTAMP")
    try:
        return int(stamp) / 1e6
    except (TypeError, ValueError):
        return None
