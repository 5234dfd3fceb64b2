"""Read a keepalived.conf as Keepalived 2.2.7 reads it (its lib/parser.c), into Statements.

The rules copied, in the order Keepalived applies them to each line:

- `!` and `#` start a comment anywhere outside double quotes; `\\#` and `\\!` stand for the
  characters themselves. Blank lines and comments carry nothing.
- A line kept while a multiline parameter definition is open (`$NAME=first \\`) is added to it,
  up to a line without a trailing backslash or a blank line.
- `@ID rest` keeps `rest` only when the config id is ID, `@^ID rest` only when it is not. The
  config id is Keepalived's `-i`; without it, this machine's node name up to its first dot.
- `$NAME=value` defines a parameter (no blank before the `=`). `$NAME` (followed by a blank, a
  comma, a `)` or the end of the line) and `${NAME}` are replaced by its value anywhere in a line,
  quotes or not; an undefined one stays as written. Keepalived defines `_INSTANCE` (the config id),
  `_PWD` (the directory of the file being read), `_HASH` (#), `_BANG` (!) and `_RANDOM`.
- `include PATTERN` (also `includer`, `includem`, `includew`, `includeb`, `includea`) reads the
  files the glob PATTERN matches, with `{a,b}` alternatives, relative to the including file's
  directory, in sorted order, where the include line was: statements of included files keep their
  own file and line. Keepalived skips directories and executable files.
- A `{` or `}` outside double quotes splits a line: `vrrp_instance VI_1 {`, `unicast_peer{` and
  `virtual_ipaddress { 10.0.0.100/24 dev eth0 }` each give a statement, then the braces.
- Words are split at blanks; a double-quoted string is one word without its quotes, blanks kept
  (`script "/usr/bin/killall -0 haproxy"` has one word). Single quotes and backslashes mean
  nothing to this split: only scripts are split again, by `command_argv`.

Keepalived knows which of its keywords open a block; this reader does not, so any statement
followed by a `{` opens one, and the lines up to the matching `}` are its children. What this
reader cannot read as Keepalived would is a Note, never silently dropped; no Note quotes the
words of a line, so no secret (an `auth_pass`) gets into one.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chaoslab.configs.statements import Note, ParsedConfig, Place, Statement, read_bytes

BLANKS = " \t"
WHITE_SPACE = " \t\f\n\r\v"
MAX_LINE = 1023  # keepalived reads a line into a buffer of MAXBUF (1024) bytes
MAX_SUBSTITUTIONS = 100  # in one line; keepalived has no limit: a parameter defined by itself never ends

DEFINITION = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)=[ \t]*(.*)", re.DOTALL)
INCLUDE = re.compile(r"include[rmwba]?[ \t\n\r\f\v]+(.*)", re.DOTALL)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BRACED = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)([ 0-9]*)\}")

Resolver = Callable[[str], Path | None]


def default_config_id() -> str:
    """Keepalived's config id when `-i` is not given: this machine's node name up to its first dot."""
    return os.uname().nodename.split(".")[0]


def parse(path: Path, config_id: str | None = None, resolve: Resolver | None = None) -> ParsedConfig:
    """The statements of the keepalived.conf at path, includes read in, as the Keepalived of
    config id config_id reads them (None: Keepalived's default, this machine's node name, and a
    Note naming the conditional lines read and skipped, so that an importer can tell which host
    they are for). Keepalived's command line defines no parameters, so neither does this.

    resolve maps an absolute include pattern of the config's own host (/etc/keepalived/conf.d/*.conf)
    to where that host's files are on this machine, None if they are not: for a copy of another
    host's /etc/keepalived. Without it, absolute patterns are read on this machine, as a Keepalived
    here would.

    Raises ChaoslabError if path is not a file that can be read."""
    reader = _Reader(default_config_id() if config_id is None else config_id, explicit=config_id is not None,
                     resolve=resolve)
    text = _read_top(path, reader.notes)
    pieces = list(reader.read(path, text))
    statements = _tree(pieces, reader.notes)
    reader.note_conditionals()
    return ParsedConfig(path, statements, tuple(reader.files), tuple(dict.fromkeys(reader.notes)))


def command_argv(statement: Statement) -> tuple[str, ...]:
    """The argv Keepalived runs for a `script`, `notify*` or `misc_path` statement: its first word
    split again at blanks, with double and single quotes and backslash escapes (\\n, \\t, \\xHH, \\ooo,
    \\cX...) as Keepalived's alloc_strvec_quoted_escaped reads them. Keepalived execs argv itself when
    argv[0] is an executable file (searched on PATH, with a warning, when it has no slash), and
    otherwise hands the words joined by blanks to /bin/sh -c. Exact unless the line has backslash
    escapes outside its quoted word (Keepalived rereads the raw line)."""
    return _quoted_escaped(statement.words[0]) if statement.words else ()


@dataclass
class _Definition:
    value: str
    multiline: bool = False


@dataclass(frozen=True)
class _Conditional:
    condition: str  # "high" for @high, "^high" for @^high
    place: Place
    kept: bool


@dataclass
class _Reader:
    """One reading of a configuration: the config id, the parameters defined so far, the files
    being read (innermost last) and everything noted on the way."""

    config_id: str
    explicit: bool
    resolve: Resolver | None
    definitions: dict[str, _Definition] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    conditionals: list[_Conditional] = field(default_factory=list)
    reading: list[Path] = field(default_factory=list)
    open_definition: _Definition | None = None

    def __post_init__(self) -> None:
        self.definitions.update({"_INSTANCE": _Definition(self.config_id), "_HASH": _Definition("#"),
                                 "_BANG": _Definition("!")})

    def read(self, path: Path, text: str) -> Iterator[tuple[str, Place]]:
        """The pieces of one file (lines split at their braces, braces alone), includes read in."""
        self.reading.append(path.resolve())
        if path not in self.files:
            self.files.append(path)
        for number, raw in enumerate(text.split("\n"), start=1):
            place = Place(path, number)
            line = raw.rstrip("\r")
            if len(line) > MAX_LINE:
                self.notes.append(Note(place, f"line longer than {MAX_LINE} characters: keepalived reads the rest "
                                              "as another line"))
            if not line and self.open_definition is not None:
                self._close_definition()
                continue
            line = _decomment(line, place, self.notes)
            if not line:
                continue
            if self.open_definition is not None:
                self._continue_definition(line)
                continue
            yield from self._pieces(line, place)
        self.reading.pop()
        if self.open_definition is not None:
            self._close_definition()

    def _pieces(self, line: str, place: Place) -> Iterator[tuple[str, Place]]:
        """keepalived's read_line for one line: conditionals, definitions, substitutions and
        includes, then the split at braces, whose rest is read again the same way."""
        pending: deque[str] = deque([line])
        while pending:
            text = pending.popleft()
            text = self._resolve(text, place, pending)
            if not text:
                continue
            include = INCLUDE.fullmatch(text)
            if include:
                yield from self._include(include.group(1), place)
                continue
            head, rest = _split_brace(text)
            if rest:
                pending.appendleft(rest)
            yield head, place

    def _resolve(self, text: str, place: Place, pending: deque[str]) -> str:
        """A line after its conditional, its definition and its parameters; "" if nothing is left."""
        while True:
            if text.startswith("@"):
                text = self._conditional(text, place)
            if not text:
                return ""
            definition = DEFINITION.fullmatch(text)
            if definition:
                self._define(definition.group(1), definition.group(2))
                return ""
            if text.startswith(("~SEQ", "~LST")):
                self.notes.append(Note(place, f"{text[:4]} repeats a line with values: not expanded here, line not read"))
                return ""
            if text.startswith("~") or "$" not in text:
                return text
            substituted = self._substitute(text, place, pending)
            if substituted is None:
                return text
            text = _decomment(substituted, place, self.notes)
            if not text.startswith("@") and "$" not in text:
                return text

    def _conditional(self, text: str, place: Place) -> str:
        reverse = text.startswith("@^")
        start = 2 if reverse else 1
        gap = next((index for index in range(start, len(text)) if text[index] in BLANKS), None)
        if gap is None:
            self.notes.append(Note(place, "conditional line with nothing after its config id: keepalived skips it"))
            return ""
        condition = text[start:gap]
        kept = (condition == self.config_id) != reverse
        self.conditionals.append(_Conditional(("^" if reverse else "") + condition, place, kept))
        return text[gap:].lstrip(BLANKS) if kept else ""

    def _define(self, name: str, value: str) -> None:
        if value.endswith("\\"):
            value = value[:-1].rstrip(BLANKS)
            self.definitions[name] = self.open_definition = _Definition(value + "\n" if value else "", multiline=True)
        else:
            self.definitions[name] = _Definition(value)

    def _continue_definition(self, line: str) -> None:
        definition = self.open_definition
        assert definition is not None
        if line.endswith("\\"):
            line = line[:-1].rstrip(BLANKS)
            if line:
                definition.value += line + "\n"
        else:
            definition.value += line
            self._close_definition()

    def _close_definition(self) -> None:
        definition = self.open_definition
        assert definition is not None
        if not definition.value:
            definition.multiline = False
        self.open_definition = None

    def _substitute(self, text: str, place: Place, pending: deque[str]) -> str | None:
        """keepalived's replace_param: every known parameter replaced, rescanning what it put in;
        a multiline value's further lines go first into pending. None if nothing was replaced."""
        position, substitutions, continuation = 0, 0, []
        while (position := text.find("$", position)) >= 0 and position + 1 < len(text):
            reference = _reference(text, position + 1)
            definition = None if reference is None else self._definition(reference[0], place)
            if reference is None or definition is None or (definition.multiline and reference[1] != len(text)):
                if reference is not None:
                    self._note_unusable(reference[0], definition, place)
                position += 1
                continue
            name, end = reference
            value = definition.value
            if definition.multiline:
                value, *rest = value.split("\n")
                continuation = rest + continuation
            if len(text) - (end - position) + len(value) > MAX_LINE:
                self.notes.append(Note(place, f"substituting ${name} would make the line longer than keepalived's "
                                              f"{MAX_LINE} characters: keepalived stops substituting here"))
                break
            text = text[:position] + value + text[end:]
            substitutions += 1
            if substitutions > MAX_SUBSTITUTIONS:
                self.notes.append(Note(place, "parameter substitution does not end (a parameter refers to itself): "
                                              "keepalived would never finish reading this line; line not read"))
                return ""
            if definition.value.lstrip(BLANKS).startswith("~"):
                break
        pending.extendleft(reversed(continuation))
        return text if substitutions else None

    def _note_unusable(self, name: str, definition: _Definition | None, place: Place) -> None:
        if definition is not None:
            self.notes.append(Note(place, f"multiline parameter ${name} can only end a line: keepalived leaves it "
                                          "as written"))
        elif name != "_RANDOM":
            self.notes.append(Note(place, f"parameter ${name} is not defined: keepalived leaves it as written"))

    def _definition(self, name: str, place: Place) -> _Definition | None:
        """The parameter of that name as keepalived would expand it at place, if it can be."""
        if name in self.definitions:
            return self.definitions[name]
        if name == "_PWD":
            return _Definition(os.path.realpath(place.file.parent))
        if name == "_RANDOM":
            self.notes.append(Note(place, "$_RANDOM differs at each reading: left as written"))
        return None

    def _include(self, pattern: str, place: Place) -> Iterator[tuple[str, Place]]:
        searched = pattern
        if self.resolve is not None and pattern.startswith("/"):
            local = self.resolve(pattern)
            if local is None:
                self.notes.append(Note(place, f"include {pattern}: that path of the host is not among its copied "
                                              "files; not read"))
                return
            searched = str(local)
        directory = place.file.parent
        matches = [name for alternative in _expand_braces(searched)
                   for name in sorted(glob.glob(alternative, root_dir=directory))]
        if not matches:
            self.notes.append(Note(place, f"include {pattern}: no file matches (keepalived reads on without it; "
                                          "includem, includea or -e make it an error)"))
        for name in matches:
            path = directory / name
            problem = _include_problem(path)
            if problem is None and path.resolve() in self.reading:
                problem = ("is already being read: an include loop (keepalived has no include depth limit and would "
                           "read it again until it runs out of file descriptors)")
            if problem is None:
                try:
                    text = _decode(path.read_bytes(), path, self.notes)
                except OSError as error:
                    problem = f"cannot be read ({error.strerror})"
            if problem is not None:
                self.notes.append(Note(place, f"include {pattern}: {path} {problem}; not read"))
                continue
            yield from self.read(path, text)

    def note_conditionals(self) -> None:
        """One Note per condition (@ID or @^ID): which of its lines were read for this config id."""
        source = "as given" if self.explicit else "keepalived's default: this machine's node name"
        conditions = dict.fromkeys(conditional.condition for conditional in self.conditionals)
        for condition in conditions:
            lines = [conditional for conditional in self.conditionals if conditional.condition == condition]
            verdict = "read" if lines[0].kept else "skipped"
            places = _places([conditional.place for conditional in lines])
            self.notes.append(Note(lines[0].place, f"lines @{condition} {verdict} for config id {self.config_id!r} "
                                                   f"({source}): {places}"))


def _places(places: list[Place]) -> str:
    """Places written short: file:3, 7, 19 for lines of one file."""
    files = dict.fromkeys(place.file for place in places)
    return "; ".join(f"{file}:" + ", ".join(str(place.line) for place in places if place.file == file) for file in files)


def _read_top(path: Path, notes: list[Note]) -> str:
    hint = "pass the path of a keepalived.conf (what keepalived -f takes)"
    data = read_bytes(path, hint)
    if path.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        notes.append(Note(Place(path, 1), "the file is executable: keepalived refuses an executable configuration file"))
    return _decode(data, path, notes)


def _include_problem(path: Path) -> str | None:
    """Why keepalived would skip a file an include matched, if it would."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if not stat.S_ISREG(mode) or mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
        return "is not a regular non-executable file"
    return None


def _decode(data: bytes, path: Path, notes: list[Note]) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        notes.append(Note(Place(path, line), "not UTF-8: the bytes that are not read as U+FFFD"))
        return data.decode("utf-8", errors="replace")


def _decomment(line: str, place: Place, notes: list[Note]) -> str:
    """keepalived's decomment: leading blanks, comments (! or # outside double quotes) and trailing
    blanks removed, \\# and \\! unescaped outside quotes; a trailing backslash is kept."""
    text = line.lstrip(BLANKS)
    kept: list[str] = []
    quoted, cut, continued = False, None, False
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 == len(text):
                continued = True
                break
            following = text[index + 1]
            kept.extend(following if not quoted and following in "#!" else char + following)
            index += 2
            continue
        if char == '"' and cut is None:
            quoted = not quoted
        elif char in "!#" and not quoted and cut is None:
            cut = len(kept)
        kept.append(char)
        index += 1
    if quoted:
        notes.append(Note(place, "unterminated double quote (keepalived: Unterminated quote)"))
    result = "".join(kept[:cut] if cut is not None else kept).rstrip(BLANKS)
    return result + "\\" if continued else result


def _reference(text: str, start: int) -> tuple[str, int] | None:
    """The parameter named at text[start:] (just after a $) and where the reference ends, if
    keepalived would take it as one: ${NAME} (or ${_RANDOM 1 10}), or $NAME followed by a blank,
    a comma, a `)` or the end of the line."""
    braced = BRACED.match(text, start)
    if braced:
        parameters = braced.group(2)
        if parameters.strip() and (braced.group(1) != "_RANDOM" or parameters.endswith(" ")):
            return None
        return braced.group(1), braced.end()
    bare = NAME.match(text, start)
    if bare and (bare.end() == len(text) or text[bare.end()] in " \t,)"):
        return bare.group(), bare.end()
    return None


def _split_brace(text: str) -> tuple[str, str]:
    """keepalived's split of a line at its first { or } outside double quotes: the line up to it
    (or the brace alone, if the line starts with one) and the rest, to be read next."""
    position = 0
    if text[0] not in "{}":
        position = None
        search = 0
        while (found := _first_of(text, '{}"', search)) is not None:
            if text[found] != '"':
                position = found
                break
            closing = text.find('"', found + 1)
            if closing < 0:
                break
            search = closing + 1
        if position is None:
            return text, ""
    end = position + 1 if position == 0 else position
    return text[:end].rstrip(BLANKS), text[end:].strip(BLANKS)


def _first_of(text: str, characters: str, start: int) -> int | None:
    found = [index for index in (text.find(char, start) for char in characters) if index >= 0]
    return min(found) if found else None


def _words(text: str) -> tuple[list[str], bool]:
    """keepalived's alloc_strvec: words split at white space, a double-quoted string one word
    without its quotes; and whether a quote was left open (keepalived drops the words from it)."""
    words: list[str] = []
    index = 0
    while True:
        while index < len(text) and text[index] in WHITE_SPACE:
            index += 1
        if index >= len(text):
            return words, False
        if text[index] == '"':
            closing = text.find('"', index + 1)
            if closing < 0:
                return words, True
            words.append(text[index + 1:closing])
            index = closing + 1
        else:
            end = index
            while end < len(text) and text[end] not in WHITE_SPACE and text[end] != '"':
                end += 1
            words.append(text[index:end])
            index = end


ESCAPES = {"a": "\a", "b": "\b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
HEX_DIGITS = "0123456789abcdefABCDEF"


def _quoted_escaped(text: str) -> tuple[str, ...]:
    """keepalived's alloc_strvec_quoted_escaped: words split at white space, "..." and '...'
    quoting (inside one, the other is plain), backslash escapes everywhere."""
    words: list[str] = []
    index = 0
    while True:
        while index < len(text) and text[index] in WHITE_SPACE:
            index += 1
        if index >= len(text):
            return tuple(words)
        word: list[str] = []
        quote = ""
        while index < len(text):
            char = text[index]
            if char == "\\":
                if index + 1 == len(text):  # keepalived refuses the whole command: "Missing escape char at end"
                    return ()
                escaped, index = _escape(text, index + 1)
                word.append(escaped)
            elif quote:
                if char == quote:
                    quote = ""
                else:
                    word.append(char)
                index += 1
            elif char in "\"'":
                quote = char
                index += 1
            elif char in WHITE_SPACE:
                break
            else:
                word.append(char)
                index += 1
        if quote:  # keepalived refuses the whole command: "missing terminating" quote
            return ()
        words.append("".join(word))


def _escape(text: str, index: int) -> tuple[str, int]:
    """The character a backslash escape at text[index:] (just after the backslash) stands for, and
    where the escape ends."""
    char = text[index]
    if char == "x" and index + 1 < len(text) and text[index + 1] in HEX_DIGITS:
        end = index + 1
        while end < len(text) and text[end] in HEX_DIGITS:
            end += 1
        return chr(int(text[index + 1:end], 16) & 0xFF), end
    if char == "c" and index + 1 < len(text):
        return chr(ord(text[index + 1]) & 0x1F), index + 2
    if "0" <= char <= "7":
        end = index + 1
        while end < len(text) and end < index + 3 and "0" <= text[end] <= "7":
            end += 1
        return chr(int(text[index:end], 8) & 0xFF), end
    return ESCAPES.get(char, char), index + 1


def _expand_braces(pattern: str) -> list[str]:
    """glibc's GLOB_BRACE, as keepalived's glob uses it: a{b,c}d -> abd, acd (nested too)."""
    depth, opening, commas = 0, None, []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            if depth == 0:
                opening, commas = index, []
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                bounds = [opening, *commas, index]
                head, tail = pattern[:opening], pattern[index + 1:]
                return [expanded for start, stop in zip(bounds, bounds[1:])
                        for expanded in _expand_braces(head + pattern[start + 1:stop] + tail)]
        elif char == "," and depth == 1:
            commas.append(index)
        index += 1
    return [pattern]


@dataclass
class _Block:
    opener: Statement
    children: list[Statement] = field(default_factory=list)

    def statement(self) -> Statement:
        return Statement(self.opener.keyword, self.opener.words, self.opener.place, tuple(self.children))


def _tree(pieces: list[tuple[str, Place]], notes: list[Note]) -> tuple[Statement, ...]:
    """The statements of the pieces: a statement followed by `{` opens a block up to its `}`."""
    top: list[Statement] = []
    blocks: list[_Block] = []
    after_statement = False
    for text, place in pieces:
        siblings = blocks[-1].children if blocks else top
        if text == "{":
            if after_statement:
                blocks.append(_Block(siblings.pop()))
            else:
                notes.append(Note(place, "'{' that follows no statement: keepalived ignores it (Unexpected '{')"))
            after_statement = False
        elif text == "}":
            if blocks:
                closed = blocks.pop().statement()
                (blocks[-1].children if blocks else top).append(closed)
            else:
                notes.append(Note(place, "'}' that closes no block (keepalived: Extra '}' found)"))
            after_statement = False
        else:
            words, open_quote = _words(text)
            if open_quote:
                notes.append(Note(place, "unmatched double quote: keepalived drops the words from it on"))
            if words:
                siblings.append(Statement(words[0], tuple(words[1:]), place))
            after_statement = bool(words)
    while blocks:
        block = blocks.pop()
        notes.append(Note(block.opener.place, f"the {block.opener.keyword} block opened here is not closed: "
                                              "a '}' is missing"))
        (blocks[-1].children if blocks else top).append(block.statement())
    return tuple(top)
