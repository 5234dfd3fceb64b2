#!/usr/bin/python3
"""HAProxy's liveness for Keepalived on ${node} (profile ${profile}), rendered by chaoslab.

Every CHECK_INTERVAL seconds, an HTTP request to HAProxy's health frontend on
the loopback (monitor-uri), answered within TIMEOUT seconds or failed. After
FALL failures in a row it writes 1 to Keepalived's track file (the instance
goes to FAULT and gives the VIP up), after RISE successes in a row 0. A dead
HAProxy refuses the connection; a frozen one (SIGSTOP) keeps its pid and its
socket, and the kernel even completes the handshake, but no answer comes: both
fail here, where a check of the pid passes for a frozen process.

Whenever the file disagrees with the verdict it is rewritten (atomically: a
new file renamed over the old), so a Keepalived that (re)created it gets the
verdict back within one interval. Standard library only: it runs on a bare VM.
"""

from __future__ import annotations

import os
import socket
import sys
import time

HOST = "127.0.0.1"
PORT = int("${health_port}")
REQUEST = b"GET ${health_uri} HTTP/1.0\r\nHost: localhost\r\n\r\n"
TRACK_FILE = "${track_file}"
PID_FILE = "${pid_file}"
CHECK_INTERVAL = int("${check_interval_ms}") / 1000
TIMEOUT = int("${timeout_ms}") / 1000
FALL = int("${fall}")
RISE = int("${rise}")
HEALTHY, FAILED = "0", "1"


def probe() -> str | None:
    """None if HAProxy answered 200 within TIMEOUT; else what went wrong."""
    deadline = time.monotonic() + TIMEOUT
    try:
        with socket.create_connection((HOST, PORT), timeout=TIMEOUT) as connection:
            connection.sendall(REQUEST)
            reply = b""
            while b"\r\n" not in reply:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                connection.settimeout(left)
                chunk = connection.recv(256)
                if not chunk:
                    return "connection closed without an answer"
                reply += chunk
    except TimeoutError:
        return "timeout"
    except OSError as error:
        return error.strerror or str(error)
    status = reply.split(b"\r\n", 1)[0].split()
    return None if len(status) > 1 and status[1] == b"200" else f"answer {reply[:40]!r}"


def current_value() -> str | None:
    try:
        with open(TRACK_FILE, encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def write_value(value: str) -> None:
    temporary = f"{TRACK_FILE}.tmp"
    with open(temporary, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    os.replace(temporary, TRACK_FILE)


def log(message: str) -> None:
    print(f"{time.time():.3f} {message}", flush=True)


def main() -> int:
    with open(PID_FILE, "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()}\n")
    log(f"probing http://{HOST}:{PORT} every {CHECK_INTERVAL:g} s (timeout {TIMEOUT:g} s, fall {FALL}, rise {RISE})")
    verdict = None
    successes = failures = 0
    next_check = time.monotonic()
    while True:
        problem = probe()
        if problem is None:
            successes, failures = successes + 1, 0
        else:
            successes, failures = 0, failures + 1
        if failures == FALL:
            log(f"HAProxy failed {FALL} checks in a row ({problem}): writing {FAILED}")
            verdict = FAILED
        elif successes == RISE:
            log(f"HAProxy passed {RISE} checks in a row: writing {HEALTHY}")
            verdict = HEALTHY
        if verdict is not None and current_value() != verdict:
            write_value(verdict)
        next_check += CHECK_INTERVAL
        delay = next_check - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_check = time.monotonic()  # late (the machine was busy): no burst to catch up


if __name__ == "__main__":
    sys.exit(main())
