"""A load of keep-alive clients beside the sampler: what long-lived connections to the VIP live through.

Run at the client's vantage point like the sampler (the provider wraps the command). Each of N clients
keeps ONE persistent HTTP/1.1 connection: it sends a request, reads the answer, thinks for a pause,
and repeats; a connection that fails is dropped and the next request opens a new one. One JSON line
per request, written as it completes: the client, which of its connections (1, 2, ...), whether that
connection had served earlier requests (reused), and the sampler's fields (sent, latency, status,
backend, error). Bounded in count and time; stops by itself, or at SIGTERM / SIGINT.

    python -m chaoslab.measure.load --output load.jsonl --target '{"url": "http://VIP:PORT/", ...}' \
        --clients N [--pause 0.1] [--timeout 1] [--max-duration S] [--max-count N]
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import signal
import ssl
import sys
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from chaoslab.measure.client import Outcome, Target, error_kind, instrument_parser, parsed_target

MAX_CLIENTS = 500
# the server ended a keep-alive connection while it was idle: the next request found it gone
CLOSED = "closed"
STOP_GRACE = 2.0  # seconds past --timeout that a client's last request may take before the process ends anyway


def failure_kind(error: BaseException, reused: bool) -> str:
    """What became of a request that got no answer: "closed" where a reused connection turned out to be
    closed by the server (no status line came, or the request could not even be sent), else
    chaoslab.measure.client.error_kind's refused, timeout, reset, unreachable or other."""
    if reused and isinstance(error, (http.client.RemoteDisconnected, http.client.BadStatusLine, BrokenPipeError)):
        return CLOSED
    return error_kind(error)


class TLSConnection(http.client.HTTPConnection):
    """HTTPS to an address, with the server name the certificate is for (SNI), as the sampler sends it."""

    default_port = 443

    def __init__(self, host: str, port: int | None, timeout: float, context: ssl.SSLContext, server_name: str):
        super().__init__(host, port, timeout=timeout)
        self.context = context
        self.server_name = server_name

    def connect(self) -> None:
        super().connect()
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.server_name)


class Endpoint:
    """How a client reaches the target: a new (not yet connected) connection, the request's path and headers."""

    def __init__(self, target: Target, timeout: float):
        parts = urlsplit(target.url)
        self.address, self.port = parts.hostname or "", parts.port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = {"Host": target.host} if target.host else {}
        self.timeout = timeout
        self.context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.context = ssl.create_default_context()
            if not target.verify_tls:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE

    def connection(self) -> http.client.HTTPConnection:
        if self.context is None:
            return http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        return TLSConnection(self.address, self.port, self.timeout, self.context, self.headers.get("Host", self.address))


def backend_of(target: Target, response: http.client.HTTPResponse, body: bytes) -> str | None:
    """The backend an http.client answer names, by Target.backend_in; the page decoded, or the cookies
    parsed, only where the target's identity reads them."""
    cookies: dict[str, str] = {}
    if target.identity == "cookie":
        jar = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or ():
            jar.load(header)
        cookies = {name: morsel.value for name, morsel in jar.items()}
    text = body.decode("utf-8", "replace") if target.identity == "body" else ""
    return target.backend_in(text, response.headers, cookies)


def record_of(client: int, connection: int, reused: bool, outcome: Outcome) -> dict:
    """One request's JSON line: Outcome.to_json's fields, built by hand (dataclasses.asdict copies
    each field, a third of the line's cost at 500 requests a second)."""
    record = {"client": client, "connection": connection, "reused": reused, "sent": outcome.sent,
              "latency": outcome.latency, "status": outcome.status, "backend": outcome.backend, "error": outcome.error}
    return {key: value for key, value in record.items() if value is not None}


def request_on(connection: http.client.HTTPConnection, endpoint: Endpoint, target: Target, reused: bool,
               headers: dict[str, str] | None = None) -> tuple[Outcome, bool]:
    """One request on the connection (connected first if it is not); the outcome, judged by Target.outcome,
    and whether the connection can carry another."""
    sent = time.time()
    started = time.perf_counter()
    try:
        if connection.sock is None:
            connection.connect()
        connection.request("GET", endpoint.path, headers={**endpoint.headers, **(headers or {})})
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        connection.close()
        return Outcome(sent, time.perf_counter() - started, error=failure_kind(error, reused)), False
    latency = time.perf_counter() - started
    backend = backend_of(target, response, body) if response.status == target.expect_status else None
    if response.will_close:  # the server said Connection: close, or answered HTTP/1.0
        connection.close()
    return target.outcome(sent, latency, response.status, backend), connection.sock is not None


def request_fresh(endpoint: Endpoint, target: Target) -> Outcome:
    """One request on a new connection, closed after it, as a fresh client sends it (the sampler's)."""
    connection = endpoint.connection()
    try:
        return request_on(connection, endpoint, target, False, {"Connection": "close"})[0]
    finally:
        connection.close()


class Load:
    """N clients, each a thread with one keep-alive connection, writing one JSON line per request."""

    def __init__(self, target: Target, output: Path, clients: int, pause: float, timeout: float,
                 max_duration: float, max_count: int | None = None):
        self.target = target
        self.endpoint = Endpoint(target, timeout)
        self.output = output
        self.clients = clients
        self.pause = pause
        self.timeout = timeout
        self.max_duration = max_duration
        per_client = math.floor(max_duration / pause) + 1 if pause > 0 else 1_000_000
        self.max_count = max_count if max_count is not None else clients * per_client
        self.tickets = itertools.count()  # next() is atomic: one ticket per request, across the clients
        self.stopping = threading.Event()
        self.write_lock = threading.Lock()
        self.deadline = 0.0

    def stop(self, *_: object) -> None:
        self.stopping.set()

    def _more(self) -> bool:
        if self.stopping.is_set():
            return False
        if next(self.tickets) >= self.max_count or time.monotonic() >= self.deadline:
            self.stopping.set()  # the bound is everyone's: the other clients end at their next request
            return False
        return True

    def _request(self, connection: http.client.HTTPConnection, reused: bool) -> tuple[Outcome, bool]:
        return request_on(connection, self.endpoint, self.target, reused)

    def _client(self, number: int, handle: TextIO) -> None:
        connection = self.endpoint.connection()
        opened = served = 0
        alive = False
        try:
            while self._more():
                if not alive:
                    opened, served = opened + 1, 0
                reused = served > 0
                outcome, alive = self._request(connection, reused)
                served += outcome.status is not None
                line = json.dumps(record_of(number, opened, reused, outcome), separators=(",", ":")) + "\n"
                with self.write_lock:
                    handle.write(line)
                    handle.flush()
                if self.stopping.wait(self.pause):
                    break
        finally:
            connection.close()

    def run(self) -> None:
        """Run the clients until stopped, max_count requests or max_duration seconds."""
        self.deadline = time.monotonic() + self.max_duration
        with open(self.output, "a", encoding="utf-8") as handle:
            threads = [threading.Thread(target=self._client, args=(number, handle), name=f"load-{number}", daemon=True)
                       for number in range(1, self.clients + 1)]
            for thread in threads:
                thread.start()
            self.stopping.wait(self.max_duration)
            self.stopping.set()
            ending = time.monotonic() + self.timeout * 2 + STOP_GRACE  # a request takes a connect and a read
            for thread in threads:
                thread.join(max(0.0, ending - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = instrument_parser("Keep-alive clients of the VIP, beside the sampler.")
    parser.add_argument("--clients", required=True, type=int, help=f"concurrent clients, 1..{MAX_CLIENTS}")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds each client thinks between requests (default 0.1)")
    parser.add_argument("--max-count", type=int, help="stop after this many requests in all (default: one per pause "
                                                       "of --max-duration for each client)")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be within 1..{MAX_CLIENTS}, not {args.clients}")
    if not 0 <= args.pause <= 60 or not 0 < args.timeout <= 10 or not 0 < args.max_duration <= 86400:
        parser.error("pause must be within 0..60 s, timeout within 0..10 s, max-duration within 0..86400 s")
    if args.max_count is not None and args.max_count < 1:
        parser.error(f"--max-count must be at least 1, not {args.max_count}")
    target = parsed_target(parser, args.target)
    load = Load(target, args.output, args.clients, args.pause, args.timeout, args.max_duration, args.max_count)
    signal.signal(signal.SIGTERM, load.stop)
    signal.signal(signal.SIGINT, load.stop)
    load.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
