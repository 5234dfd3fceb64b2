"""The client's vantage point: one HTTP request to the VIP, and what came of it.

What counts as an answer is the target's: the status the service gives when it is well, and
how an answer names the backend that wrote it (a text in its page, a response header such as
the one HAProxy can add, a cookie such as HAProxy's `cookie ... insert`), or nothing at all.
"""

from __future__ import annotations

import argparse
import errno
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

MAX_DURATION = 900.0  # seconds: the longest a sampler or a load runs


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent (unix time), how long it took, and what answered."""

    sent: float
    latency: float
    status: int | None = None
    backend: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """An answer as the target expects it (the client set no error)."""
        return self.error is None and self.status is not None

    def to_json(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: dict) -> Outcome:
        return cls(**data)


def error_kind(error: BaseException) -> str:
    """refused, timeout, reset, unreachable or other, from the exception chain."""
    if isinstance(error, requests.Timeout):
        return "timeout"
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "refused"
        if isinstance(seen, ConnectionResetError):
            return "reset"
        if isinstance(seen, TimeoutError):
            return "timeout"
        if isinstance(seen, OSError) and seen.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        for argument in getattr(seen, "args", ()):
            if isinstance(argument, BaseException) and argument is not seen:
                nested = error_kind(argument)
                if nested != "other":
                    return nested
        seen = seen.__cause__ or seen.__context__
    return "other"


IDENTITIES = ("body", "header", "cookie", "none")


@dataclass(frozen=True)
class Target:
    """What the client asks, and what counts as an answer.

    identity says how an answer names its backend: "body" (the backend whose marker its page
    contains), "header" or "cookie" (the value of the response header or cookie `field`, the
    backend whose marker it is), or "none" (an application that says nothing of it: any answer
    with the expected status counts, and which backend wrote it is not known)."""

    url: str
    backends: tuple[tuple[str, str], ...] = ()  # (backend name, its marker)
    identity: str = "body"
    field: str | None = None  # the header or cookie that names the backend
    host: str | None = None  # the Host header and TLS server name, where the service needs one
    expect_status: int = 200
    verify_tls: bool = True

    def backend_of(self, response: requests.Response) -> str | None:
        """The backend that wrote a response of the requests library."""
        return self.backend_in(response.text if self.identity == "body" else "", response.headers, response.cookies)

    def backend_in(self, body: str, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
        """The backend an answer names (its page, a header or a cookie, as identity says; headers
        looked up case-insensitively by the caller's mapping); None where it names none, or for
        identity "none"."""
        if self.identity == "none":
            return None
        if self.identity == "body":
            return next((name for name, marker in self.backends if marker in body), None)
        value = headers.get(self.field) if self.identity == "header" else cookies.get(self.field)
        return next((name for name, marker in self.backends if marker == value), None)

    def outcome(self, sent: float, latency: float, status: int, backend: str | None) -> Outcome:
        """An answer judged as the target expects it: another status is an "http" failure; one
        that names no known backend (where the target's answers name theirs) an "unidentified" one."""
        if status != self.expect_status:
            return Outcome(sent, latency, status=status, error="http")
        if backend is None and self.identity != "none":
            return Outcome(sent, latency, status=status, error="unidentified")
        return Outcome(sent, latency, status=status, backend=backend)

    def to_json(self) -> dict:
        return {**asdict(self), "backends": [list(pair) for pair in self.backends]}

    def arguments(self) -> list[str]:
        """The target as the sampler's command-line arguments."""
        return ["--target", json.dumps(self.to_json(), separators=(",", ":"))]

    @classmethod
    def from_json(cls, data: dict) -> Target:
        return cls(**{**data, "backends": tuple(tuple(pair) for pair in data.get("backends", ()))})


class ServerName(HTTPAdapter):
    """TLS to an address with the server name the certificate is for (SNI), as a browser sends it."""

    def __init__(self, server_name: str):
        self.server_name = server_name
        super().__init__()

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        kwargs["server_hostname"] = self.server_name
        kwargs["assert_hostname"] = self.server_name
        super().init_poolmanager(*args, **kwargs)


def new_session(target: Target) -> requests.Session:
    """A session for the target: never a proxy from the environment (only the lab's VIP), and TLS with the
    target's server name where it has one."""
    session = requests.Session()
    session.trust_env = False
    if target.host and target.url.startswith("https:"):
        session.mount("https://", ServerName(target.host))
    return session


def request_vip(target: Target, timeout: float) -> Outcome:
    """GET the target once on a new connection, as a fresh client would; the answer judged by
    Target.outcome. (The sampler sends the same request with http.client: chaoslab.measure.load.)"""
    sent = time.time()
    started = time.perf_counter()
    headers = {"Connection": "close", **({"Host": target.host} if target.host else {})}
    try:
        with new_session(target) as session:
            response = session.get(target.url, timeout=timeout, headers=headers, allow_redirects=False,
                                verify=target.verify_tls)
    except requests.RequestException as error:
        return Outcome(sent, time.perf_counter() - started, error=error_kind(error))
    latency = time.perf_counter() - started
    backend = target.backend_of(response) if response.status_code == target.expect_status else None
    return target.outcome(sent, latency, response.status_code, backend)


def instrument_parser(description: str) -> argparse.ArgumentParser:
    """The command line the sampler and the load share: where they write, what they ask, how long."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--output", required=True, type=Path, help="JSON-lines file appended to")
    parser.add_argument("--target", required=True, type=json.loads,
                        help="what to request and what counts as an answer: chaoslab.measure.client.Target as JSON")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds before a connect or a read counts as timeout")
    parser.add_argument("--max-duration", type=float, default=MAX_DURATION, help="stop after this many seconds")
    return parser


def parsed_target(parser: argparse.ArgumentParser, value: dict) -> Target:
    """--target as a Target, or the parser's error naming what is wrong."""
    try:
        return Target.from_json(value)
    except TypeError as error:
        parser.error(f"--target is not a target: {error}")
        raise  # parser.error exits; this line is never reached
