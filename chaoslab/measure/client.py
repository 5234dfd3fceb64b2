"""The client's vantage point: one HTTP request to the VIP, and what came of it."""

from __future__ import annotations

import errno
import time
from dataclasses import asdict, dataclass

import requests


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
        return self.status == 200 and self.backend is not None

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


@dataclass(frozen=True)
class Target:
    """What the client asks: a URL, and how an answer names the backend that wrote it (the
    backend whose marker its page contains)."""

    url: str
    backends: tuple[tuple[str, str], ...]  # (backend name, marker in its page)

    def backend_of(self, body: str) -> str | None:
        return next((name for name, marker in self.backends if marker in body), None)

    def arguments(self) -> list[str]:
        """The target as the sampler's command-line arguments."""
        return ["--url", self.url, *(f"--backend={name}={marker}" for name, marker in self.backends)]


def request_vip(target: Target, timeout: float) -> Outcome:
    """GET the target once on a new connection, as a fresh client would."""
    sent = time.time()
    started = time.perf_counter()
    try:
        with requests.Session() as session:
            session.trust_env = False  # never a proxy from the environment: only the lab's VIP
            response = session.get(
                target.url,
                timeout=timeout,
                headers={"Connection": "close"},
                allow_redirects=False,
            )
    except requests.RequestException as error:
        return Outcome(sent, time.perf_counter() - started, error=error_kind(error))
    latency = time.perf_counter() - started
    if response.status_code != 200:
        return Outcome(sent, latency, status=response.status_code, error="http")
    return Outcome(sent, latency, status=200, backend=target.backend_of(response.text))
