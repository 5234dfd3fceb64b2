"""What a keepalived.conf or haproxy.cfg says, statement by statement, each where it was written.

Both parsers (keepalived.py, haproxy.py) give a tree of Statements: a keyword, its words and,
for a block (keepalived's `vrrp_instance VI_1 { ... }`, HAProxy's `backend web`), the statements
inside. Every statement keeps the file and line it came from, so that an import can name what it
could not map and a lint finding can point at the line to change. Pure data, and the one
reader of a configuration file's bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chaoslab.errors import ChaoslabError


@dataclass(frozen=True)
class Place:
    """Where something was written: a file and its line (1-based)."""

    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Statement:
    """One keyword with its words, and the statements of its block if it opens one."""

    keyword: str
    words: tuple[str, ...]
    place: Place
    children: tuple[Statement, ...] = ()

    def first(self, keyword: str) -> Statement | None:
        """The first child statement of that keyword, if any."""
        return next(self.all(keyword), None)

    def all(self, keyword: str) -> Iterator[Statement]:
        """The child statements of that keyword, in the order written."""
        return (child for child in self.children if child.keyword == keyword)

    def word(self, keyword: str, index: int = 0) -> str | None:
        """A word of the first child of that keyword (`priority 100` -> "100"), if any."""
        child = self.first(keyword)
        return child.words[index] if child is not None and len(child.words) > index else None

    @property
    def name(self) -> str | None:
        """The block's name (`vrrp_instance VI_1` -> "VI_1", `backend web` -> "web")."""
        return self.words[0] if self.words else None


@dataclass(frozen=True)
class Note:
    """What a parser or an import could not read or map, and where: named, never dropped silently."""

    place: Place | None
    message: str

    def __str__(self) -> str:
        return f"{self.place}: {self.message}" if self.place else self.message


@dataclass(frozen=True)
class ParsedConfig:
    """A whole configuration: its top-level statements (includes already read in), every file
    read for it, and the notes of what was skipped or left unresolved."""

    path: Path
    statements: tuple[Statement, ...]
    files: tuple[Path, ...]
    notes: tuple[Note, ...] = field(default=())

    def all(self, keyword: str) -> Iterator[Statement]:
        return (statement for statement in self.statements if statement.keyword == keyword)

    def first(self, keyword: str) -> Statement | None:
        return next(self.all(keyword), None)


def read_bytes(path: Path, hint: str) -> bytes:
    """A configuration file's bytes; a ChaoslabError naming the path and the hint (what to pass) when
    it is a directory, missing or unreadable."""
    if path.is_dir():
        raise ChaoslabError(f"{path} is a directory: {hint}")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ChaoslabError(f"{path} does not exist: {hint}") from None
    except OSError as error:
        raise ChaoslabError(f"cannot read {path} ({error.strerror}): {hint}, readable by this user") from None
