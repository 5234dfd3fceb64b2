"""Reading a host's own journal: Keepalived's state changes and systemd's restarts, from entries as
`journalctl -o json` prints them (the real thing runs against systemd hosts in test_owned_hosts)."""

from __future__ import annotations

from chaoslab.lab.services.systemd import (
    FAILED_WITH_RESULT,
    PROCESS_EXITED,
    RESTART_SCHEDULED,
    STARTED,
    restarts_in,
)
from chaoslab.lab.vrrp import state_line

T = 1_796_000_000_000_000  # microseconds, as journald stamps (UTC, whatever the host's zone)


def entry(message: object, at: int = T, **fields: str) -> dict:
    return {"MESSAGE": message, "__REALTIME_TIMESTAMP": str(at), **fields}


def test_keepalived_2_and_1_state_lines_are_states():
    assert state_line(entry("(VI_1) Entering MASTER STATE"), None) == "1796000000.000000 MASTER"
    assert state_line(entry("VRRP_Instance(VI_1) Entering BACKUP STATE", T + 250_000), None) == \
        "1796000000.250000 BACKUP"
    assert state_line(entry("(VI_1) Entering FAULT STATE"), "VI_1") == "1796000000.000000 FAULT"


def test_other_lines_and_other_instances_are_not():
    assert state_line(entry("VRRP_Instance(VI_1) Transition to MASTER STATE"), None) is None
    assert state_line(entry("(VI_1) received lower priority (100) advert from 10.203.7.12 - discarding"), None) is None
    assert state_line(entry("(VI_2) Entering MASTER STATE"), "VI_1") is None
    assert state_line(entry([40, 86, 73]), None) is None  # journald gives bytes that are not UTF-8 as a list


def test_the_sender_stamp_is_preferred_to_journald_s():
    line = state_line(entry("(VI_1) Entering MASTER STATE", _SOURCE_REALTIME_TIMESTAMP=str(T - 3000)), None)
    assert line == "1795999999.997000 MASTER"


def systemd(message_id: str, at_ms: int) -> dict:
    return {"MESSAGE_ID": message_id, "UNIT": "haproxy.service", "__REALTIME_TIMESTAMP": str(T + at_ms * 1000)}


def test_a_restart_runs_from_the_exit_to_the_start_after_it():
    entries = [systemd(STARTED, 0), entry("Proxy web started."), systemd(PROCESS_EXITED, 5000),
               systemd(FAILED_WITH_RESULT, 5001), systemd(RESTART_SCHEDULED, 5110), systemd(STARTED, 5180)]
    [restart] = restarts_in(entries)
    assert (restart.unit, restart.down, restart.up) == ("haproxy.service", 1796000005.0, 1796000005.18)


def test_a_stop_and_start_by_hand_is_no_restart_and_a_pending_one_has_no_end():
    by_hand = [systemd(PROCESS_EXITED, 0), systemd(STARTED, 2000)]
    assert restarts_in(by_hand) == []
    [pending] = restarts_in([*by_hand, systemd(PROCESS_EXITED, 3000), systemd(RESTART_SCHEDULED, 3100)])
    assert (pending.down, pending.up) == (1796000003.0, None)
