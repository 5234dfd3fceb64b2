"""Read a haproxy.cfg as HAProxy 2.6 reads it (src/cfgparse.c readcfgfile, src/tools.c parse_line,
src/cfgcond.c), into Statements: one per section, its lines as children.

The rules copied:

- A line ends at LF, CR or NUL; `#` outside quotes starts a comment; leading blanks mean nothing.
- Words are split at blanks outside quotes. "..." and '...' quote (inside one, the other is
  plain); a backslash escapes a blank, `\\`, `#`, `'`, `"` (outside single quotes), `\\t`, `\\n`,
  `\\r`, `\\xHH`, and `$` inside double quotes; other backslashes stay.
- Environment variables are expanded inside double quotes only: `"$NAME"`, `"${NAME}"`,
  `"${NAME-default}"`, `"${NAME[*]}"` (one word per blank-separated part), and HAProxy's own
  `.FILE`, `.LINE`, `.SECTION`. Unquoted, `$NAME` is text. An undefined variable expands to nothing.
- HAProxy reads a line's words up to the first empty one ("", or a variable that expands to
  nothing): the words after it are ignored, silently.
- `.if`/`.elif`/`.else`/`.endif` keep or skip lines by conditions: `defined(NAME)`,
  `streq(a,b)`, `strneq(a,b)`, numbers, `!`, `&&`, `||` and parentheses are evaluated here from the
  environment as HAProxy would. `feature()`, `version_atleast()`, `version_before()` and the
  OpenSSL predicates depend on the binary: a block whose condition needs one is kept, every branch
  of it, with a Note, as no branch can be chosen without the binary.
- The section keywords of HAProxy 2.6 (SECTIONS) start a section; every other line belongs to the
  section above it.

Lines HAProxy refuses, skips or cannot be shown here are Notes; none quotes a line's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chaoslab.configs.statements import Note, ParsedConfig, Place, Statement, read_bytes
from chaoslab.errors import ChaoslabError

# REGISTER_CONFIG_SECTION in HAProxy 2.6 (cfgparse.c, cache.c, fcgi-app.c, http_htx.c, log.c,
# mworker-prog.c, resolvers.c, sink.c); the SPOE sections live in SPOE's own files
SECTIONS = frozenset({
    "global", "defaults", "frontend", "backend", "listen", "userlist", "peers", "mailers", "namespace_list",
    "resolvers", "cache", "fcgi-app", "http-errors", "log-forward", "program", "ring",
})
MAX_WORDS = 64  # MAX_LINE_ARGS
MAX_NESTED_CONDITIONS = 100  # MAXNESTEDCONDS
SPACE = " \t\n\v\f\r"  # C isspace
BLANKS = " \t"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
NAME_CHARACTERS = LETTERS + "0123456789_"
HEX_DIGITS = "0123456789abcdefABCDEF"
NUMBER = re.compile(r"[ \t\n\v\f\r]*[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
PREDICATES = {"defined": 1, "feature": 1, "streq": 2, "strneq": 2, "version_atleast": 1, "version_before": 1,
              "openssl_version_atleast": 1, "openssl_version_before": 1, "ssllib_name_startswith": 1}


def parse(path: Path, environment: Mapping[str, str] | None = None) -> ParsedConfig:
    """The sections of the haproxy.cfg at path, as HAProxy 2.6 reads it with exactly the environment
    variables of environment (default: none, not this process's, so that a result does not depend
    on where it was computed). HAProxy sets HAPROXY_LOCALPEER (the host name, or -L) itself before
    it reads: put it in environment if the file uses it.

    Raises ChaoslabError if path is not a file that can be read."""
    reader = _Reader(path, dict(environment or {}))
    for number, line in enumerate(_lines(path, reader.notes), start=1):
        if not reader.read_line(line, Place(path, number)):
            break
    else:
        reader.finish()
    return ParsedConfig(path, tuple(reader.statements()), (path,), tuple(reader.notes))


class _Stop(Exception):
    """HAProxy stops reading the file here; the message says why."""


@dataclass
class _Branch:
    """One level of .if: whether its current branch is read, and whether an earlier branch was
    taken (None: unknown, a condition depends on the binary)."""

    place: Place
    reading: bool
    taken: bool | None
    masked: bool  # an enclosing level is not read
    after_else: bool = False


@dataclass
class _Section:
    keyword: str
    words: tuple[str, ...]
    place: Place
    children: list[Statement] = field(default_factory=list)


@dataclass
class _Reader:
    path: Path
    environment: dict[str, str]
    notes: list[Note] = field(default_factory=list)
    sections: list[_Section] = field(default_factory=list)
    branches: list[_Branch] = field(default_factory=list)
    section_name: str | None = None

    def read_line(self, line: str, place: Place) -> bool:
        """Read one line; False once HAProxy would stop reading the file."""
        try:
            self._read(line, place)
        except _Stop as stop:
            self.notes.append(Note(place, f"HAProxy 2.6 stops reading the file here: {stop}; the lines after it "
                                          "are not read"))
            return False
        return True

    def _read(self, line: str, place: Place) -> None:
        line = line.lstrip(SPACE)
        if line.startswith("["):
            self.notes.append(Note(place, "a [scope] line (HAProxy's cfg_parse_scope): not read here"))
            return
        words, undefined = _tokenize(line, lambda name: self._variable(name, place))
        if isinstance(words, str):
            self.notes.append(Note(place, f"HAProxy 2.6 rejects the configuration: {words} in this line (not read)"))
            return
        if len(words) > MAX_WORDS:
            self.notes.append(Note(place, f"HAProxy 2.6 rejects the configuration: more than {MAX_WORDS} words in "
                                          "this line (not read)"))
            return
        if not words[0]:
            if any(words):
                self.notes.append(Note(place, "the line starts with an empty word: HAProxy 2.6 takes it for an "
                                              "empty line"))
            return
        masked = any(not branch.reading for branch in self.branches)
        if words[0] in (".if", ".elif", ".else", ".endif"):
            if not masked:
                self._notes_undefined(undefined, place)
            self._condition(words, place)
            return
        if masked:
            return
        self._notes_undefined(undefined, place)
        if words[0].startswith("."):
            self._directive(words, place)
            return
        self._statement(_read_words(words, place, self.notes), place)

    def _variable(self, name: str, place: Place) -> str | None:
        pseudo = {".FILE": str(self.path), ".LINE": str(place.line), ".SECTION": self.section_name}
        return pseudo[name] if name in pseudo else self.environment.get(name)

    def _notes_undefined(self, undefined: list[str], place: Place) -> None:
        for name in dict.fromkeys(undefined):
            self.notes.append(Note(place, f"environment variable {name} is not defined: HAProxy expands it to "
                                          "nothing"))

    def _statement(self, words: list[str], place: Place) -> None:
        keyword, rest = words[0], tuple(words[1:])
        if keyword in SECTIONS:
            self.sections.append(_Section(keyword, rest, place))
            self.section_name = rest[0] if rest else keyword
        elif self.sections:
            self.sections[-1].children.append(Statement(keyword, rest, place))
        else:
            self.notes.append(Note(place, f"{keyword} before any section: HAProxy 2.6 refuses it (unknown keyword "
                                          f"'{keyword}' out of section)"))

    def _directive(self, words: list[str], place: Place) -> None:
        directive = words[0]
        if directive not in (".alert", ".warning", ".notice", ".diag"):
            raise _Stop(f"unknown directive '{directive}'")
        if len(words) > 2 and words[2]:
            self.notes.append(Note(place, f"{directive} with more than one word: HAProxy 2.6 refuses the line "
                                          "(the message must be quoted)"))
            return
        message = words[1] if len(words) > 1 else ""
        if directive == ".alert":
            raise _Stop(f".alert '{message}'")
        self.notes.append(Note(place, f"HAProxy 2.6 logs: {directive} '{message}'"))

    def _condition(self, words: list[str], place: Place) -> None:
        directive = words[0]
        current = self.branches[-1] if self.branches else None
        if directive in (".else", ".endif") and len(words) > 1 and words[1]:
            raise _Stop(f"unexpected argument '{words[1]}' for '{directive}'")
        if directive != ".if" and current is None:
            raise _Stop(f"lone '{directive}' with no matching '.if'")
        if directive == ".if":
            masked = any(not branch.reading for branch in self.branches)
            if len(self.branches) + 1 >= MAX_NESTED_CONDITIONS:
                raise _Stop(f"too many nested '.if', max is {MAX_NESTED_CONDITIONS}")
            value = None if masked else self._evaluate(words, place)
            self.branches.append(_Branch(place, reading=not masked and value is not False, taken=value, masked=masked))
        elif directive == ".endif":
            self.branches.pop()
        elif current.after_else:
            raise _Stop(f"'{directive}' after '.else' is not permitted")
        elif current.masked:
            current.after_else = directive == ".else"
        elif directive == ".elif":
            if current.taken is True:
                current.reading = False
                self._note_skipped(place, "an earlier branch is taken")
            else:
                value = self._evaluate(words, place)
                current.reading = value is not False
                if current.taken is False:
                    current.taken = value
                elif value is True:
                    self.notes.append(Note(place, ".elif after a condition that depends on the HAProxy binary: its "
                                                  "lines are kept, as the earlier branches' are"))
        else:
            current.after_else = True
            current.reading = current.taken is not True
            if current.taken is True:
                self._note_skipped(place, "an earlier branch is taken")
            elif current.taken is None:
                self.notes.append(Note(place, ".else after a condition that depends on the HAProxy binary: its "
                                              "lines are kept, as the earlier branches' are"))

    def _evaluate(self, words: list[str], place: Place) -> bool | None:
        """The value of a .if/.elif condition; None when it depends on the binary (Noted)."""
        try:
            value = _Condition(" ".join(words[1:]), self.environment).value()
        except ValueError as error:
            raise _Stop(f"{error} in '{words[0]}'") from None
        if value is None:
            self.notes.append(Note(place, f"{words[0]} depends on the HAProxy binary (feature, version or OpenSSL): "
                                          "its lines are kept, and those of the other branches too"))
        elif not value:
            self._note_skipped(place, "its condition is false with the given environment")
        return value

    def _note_skipped(self, place: Place, reason: str) -> None:
        self.notes.append(Note(place, f"the lines up to the next .elif, .else or .endif are not read: {reason}"))

    def finish(self) -> None:
        for branch in self.branches:
            self.notes.append(Note(branch.place, "non-terminated '.if' block: HAProxy 2.6 refuses the file"))

    def statements(self) -> list[Statement]:
        return [Statement(section.keyword, section.words, section.place, tuple(section.children))
                for section in self.sections]


def _lines(path: Path, notes: list[Note]) -> list[str]:
    """The file's lines as HAProxy's fgets loop sees them, with a Note for a missing final newline
    or a NUL character (HAProxy 2.6 refuses both); reading stops at a NUL."""
    hint = "pass the path of a haproxy.cfg (what haproxy -f takes)"
    if path.is_dir():
        raise ChaoslabError(f"{path} is a directory (haproxy -f DIR reads its *.cfg files in order): {hint}, "
                            "and parse each file")
    data = read_bytes(path, hint)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        notes.append(Note(Place(path, data[:error.start].count(b"\n") + 1), "not UTF-8: the bytes that are not "
                                                                            "read as U+FFFD"))
        text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    final = lines.pop()
    if final:
        lines.append(final)
    for number, line in enumerate(lines, start=1):
        if "\0" in line:
            notes.append(Note(Place(path, number), "a NUL character: HAProxy 2.6 reads the line up to it and refuses "
                                                   "the file (Stray NUL character); the lines after it are not read"))
            return [*lines[:number - 1], line.split("\0")[0]]
    if final:
        position = len(final.encode("utf-8")) + 1
        notes.append(Note(Place(path, len(lines)), "no newline at the end of the file: HAProxy 2.6 refuses it "
                                                   f"(\"Missing LF on last line, file might have been truncated at "
                                                   f"position {position}\")"))
    return lines


def _read_words(words: list[str], place: Place, notes: list[Note]) -> list[str]:
    """The words HAProxy reads: those before the first empty one."""
    if "" not in words:
        return words
    empty = words.index("")
    ignored = sum(1 for word in words[empty:] if word)
    if ignored:
        notes.append(Note(place, f"an empty word (\"\" or a variable that expands to nothing) ends the line for "
                                 f"HAProxy 2.6: the {ignored} word(s) after it are ignored"))
    return words[:empty]


def _tokenize(line: str, variable: Callable[[str], str | None]) -> tuple[list[str] | str, list[str]]:
    """HAProxy's parse_line with readcfgfile's options: the words (trailing empty ones included)
    or HAProxy's reason to refuse the line, and the undefined variables met."""
    words: list[str] = []
    word: list[str] = []
    undefined: list[str] = []
    quote = ""
    index = 0
    while index < len(line) and line[index] not in "\0\n\r":
        char = line[index]
        if char == "#" and not quote:
            break
        if char in "\"'" and quote in ("", char):
            quote = "" if quote else char
            index += 1
        elif char == "\\" and quote != "'":
            escaped, index = _backslash(line, index, quote == '"')
            if escaped is None:
                return "truncated or invalid hexadecimal sequence", undefined
            word.append(escaped)
        elif char in SPACE and not quote:
            while index < len(line) and line[index] in SPACE:
                index += 1
            words.append("".join(word))
            word = []
        elif char == "$" and quote == '"':
            expanded = _expand(line, index + 1, variable)
            if isinstance(expanded, str):
                return expanded, undefined
            parts, index, name = expanded
            if name is not None:
                undefined.append(name)
            word.append(parts[0])
            for part in parts[1:]:
                words.append("".join(word))
                word = [part]
        else:
            word.append(char)
            index += 1
    words.append("".join(word))
    if quote:
        return "unmatched quote", undefined
    return words, undefined


def _backslash(line: str, index: int, in_double_quotes: bool) -> tuple[str | None, int]:
    """What a backslash at line[index] stands for (None for a bad \\x sequence), and what follows it."""
    following = line[index + 1] if index + 1 < len(line) else ""
    plain = {" ": " ", "\\": "\\", "t": "\t", "n": "\n", "r": "\r", "#": "#", "'": "'", '"': '"'}
    if following in plain:
        return plain[following], index + 2
    if following == "$" and in_double_quotes:
        return "$", index + 2
    if following == "x":
        digits = line[index + 2:index + 4]
        if len(digits) < 2 or any(digit not in HEX_DIGITS for digit in digits):
            return None, index
        return chr(int(digits, 16)), index + 4
    return "\\", index + 1


def _expand(line: str, index: int, variable: Callable[[str], str | None]) -> tuple[list[str], int, str | None] | str:
    """An environment variable at line[index:] (just after its $): the words it becomes (several
    with [*]), where the line goes on, the variable's name if it is undefined; or HAProxy's reason
    to refuse the line."""
    braced = index < len(line) and line[index] == "{"
    index += braced
    if index >= len(line) or line[index] not in LETTERS + "_.":
        return "forbidden first char in environment variable name"
    start = index
    index += line[index] == "."
    while index < len(line) and line[index] in NAME_CHARACTERS:
        index += 1
    name = line[start:index]
    if name.startswith(".") and name not in (".FILE", ".LINE", ".SECTION"):
        return "forbidden first char in environment variable name"
    value = variable(name)
    several = False
    if braced and line.startswith("[", index):
        if not line.startswith("[*]", index):
            return "truncated or invalid word expansion sequence"
        several, index = True, index + 3
    if braced:
        if line.startswith("-", index):
            closing = line.find("}", index)
            if closing < 0:
                return "unmatched brace in environment variable name"
            if value is None:
                value, name = line[index + 1:closing], None
            index = closing
        elif not line.startswith("}", index):
            return "unmatched brace in environment variable name"
        index += 1
    if value is None:
        return [""], index, name
    return (re.split(r"[ \t\n\v\f\r]+", value) if several else [value]), index, None


class _Condition:
    """HAProxy 2.6's .if expression (cfgcond.c): terms with `!`, joined by && and ||; a term is a
    number, a parenthesised expression or a predicate. value() is None when the binary decides."""

    def __init__(self, text: str, environment: Mapping[str, str]):
        self.text = text
        self.environment = environment
        self.index = 0

    def value(self) -> bool | None:
        if not self.text:
            return False
        value = self._expression()
        self._skip_blanks()
        if self.index < len(self.text):
            raise ValueError(f"unexpected character '{self.text[self.index]}' at the end of conditional expression")
        return value

    def _skip_blanks(self) -> None:
        while self.index < len(self.text) and self.text[self.index] in BLANKS:
            self.index += 1

    def _expression(self) -> bool | None:
        values = [self._and()]
        self._skip_blanks()
        while self.text.startswith("||", self.index):
            self.index += 2
            self._skip_blanks()
            values.append(self._and())
            self._skip_blanks()
        return True if True in values else (None if None in values else False)

    def _and(self) -> bool | None:
        values = [self._term()]
        self._skip_blanks()
        while self.text.startswith("&&", self.index):
            self.index += 2
            self._skip_blanks()
            values.append(self._term())
            self._skip_blanks()
        return False if False in values else (None if None in values else True)

    def _term(self) -> bool | None:
        self._skip_blanks()
        if self.index >= len(self.text):
            raise ValueError("unparsable conditional sub-expression")
        negated = False
        while self.text.startswith("!", self.index):
            negated = not negated
            self.index += 1
            self._skip_blanks()
        value = self._positive_term()
        return value if value is None or not negated else not value

    def _positive_term(self) -> bool | None:
        number = NUMBER.match(self.text, self.index)
        if number:  # strtol(text, &end, 0): only whether it is 0 matters
            self.index = number.end()
            return number.group(1).strip("0xX") != ""
        if self.text.startswith("(", self.index):
            self.index += 1
            self._skip_blanks()
            value = self._expression()
            self._skip_blanks()
            if not self.text.startswith(")", self.index):
                raise ValueError("expected ')' after conditional expression")
            self.index += 1
            return value
        word = re.match(r"[^ (]*", self.text[self.index:]).group()
        if word not in PREDICATES:
            raise ValueError(f"unparsable conditional expression '{self.text[self.index:]}'")
        self.index += len(word)
        arguments = self._arguments(PREDICATES[word])
        if word == "defined":
            return arguments[0] in self.environment
        if word in ("streq", "strneq"):
            return (arguments[0] == arguments[1]) == (word == "streq")
        return None

    def _arguments(self, count: int) -> list[str]:
        """HAProxy's make_arg_list for count string arguments in parentheses."""
        if not self.text.startswith("(", self.index):
            arguments = [""]  # no parentheses: one empty argument
        else:
            self.index += 1
            arguments = []
            while len(arguments) < count:
                arguments.append(self._argument())
                if self.index >= len(self.text) or self.text[self.index] == ")" or len(arguments) >= count:
                    break
                self.index += 1  # the comma
            if not self.text.startswith(")", self.index):
                raise ValueError("expected ')' in the arguments of a predicate")
            self.index += 1
        if len(arguments) < count:
            raise ValueError(f"missing arguments (got {len(arguments)}/{count}) of a predicate")
        return arguments

    def _argument(self) -> str:
        text, characters, quote = self.text, [], ""
        while self.index < len(text):
            char = text[self.index]
            if char in "\"'" and quote in ("", char):
                quote = "" if quote else char
            elif char == "\\" and quote != "'" and self.index + 1 < len(text):
                following = text[self.index + 1]
                escapes = {"\\": "\\", " ": " ", '"': '"', "'": "'", "r": "\r", "n": "\n", "t": "\t"}
                if following in escapes:
                    characters.append(escapes[following])
                    self.index += 1
                else:
                    characters.append(char)
            elif not quote and char in ",)":
                break
            else:
                characters.append(char)
            self.index += 1
        return "".join(characters)
