"""Texts too long to hold in memory (issue 24: a 50 MB single-line document took prepare-data to 7.7 GB).

A long text is never read whole: it is a :class:`FileText` (a JSON string value of a JSON line, or a range of a
UTF-8 text file, located by byte offsets and decoded again on each read) or a :class:`StrText` (a string a
library already holds, e.g. a ``datasets`` row), and its consumers read it with ``chunks()``: pieces of at most
about :data:`CHUNK_BYTES` characters whose concatenation is the text.

:func:`iter_jsonl_long` is :func:`neuronmoe.utils.io.iter_jsonl` for data files: a line of at most
:data:`LONG_TEXT_BYTES` is parsed by ``json.loads`` as before; a longer one is parsed in pieces of
:data:`CHUNK_BYTES` (:class:`_LongLine`), and each of its string values longer than :data:`LONG_TEXT_BYTES`
bytes (the ``text`` field) becomes a :class:`FileText`, checked (valid escapes, UTF-8) while it is scanned.
Memory per line is then a few chunks, for any line length.
"""
from __future__ import annotations

import codecs
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Type

from neuronmoe.errors import InputError

#: a JSON line (or a text line or file) longer than this many bytes is read in pieces; a string value longer than
#: this becomes a :class:`FileText`
LONG_TEXT_BYTES = 1 << 20
#: bytes read (and characters decoded) per step
CHUNK_BYTES = 1 << 20

_INLINE_WS = b" \t\r"  # JSON whitespace within one line
_LITERAL_END = re.compile(rb"[,\]}\s]")


def _json_cut(s: str) -> int:
    """The longest prefix of escaped JSON string content ``s`` that ends between two escapes (``\\uXXXX`` is six
    characters: a backslash in the last six either starts an escape, cut before it, or ends a ``\\\\``)."""
    n = len(s)
    j = s.rfind("\\", max(0, n - 6), n)
    if j < 0:
        return n
    k = j
    while k > 0 and s[k - 1] == "\\":
        k -= 1
    return j if (j - k + 1) % 2 else n


class JsonStringDecoder:
    """The characters of a JSON string's content (the bytes between its quotes) given in pieces of any size.

    UTF-8 is decoded incrementally; escapes are decoded by ``json.loads`` on the longest prefix that does not
    cut one (nor the two halves of an escaped surrogate pair), so the pieces join to what ``json.loads`` gives
    the whole string. Raises ``UnicodeDecodeError`` or ``ValueError`` (``json.JSONDecodeError``) on bad input.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._carry = ""

    def feed(self, data: bytes, final: bool = False) -> str:
        s = self._carry + self._utf8.decode(data, final)
        cut = len(s) if final else _json_cut(s)
        out = json.loads('"' + s[:cut] + '"') if cut else ""
        if not final and out and "\ud800" <= out[-1] <= "\udbff":  # a high surrogate: decode it with its low half
            cut -= 6
            out = json.loads('"' + s[:cut] + '"') if cut else ""
        self._carry = s[cut:]
        return out


@dataclass(frozen=True)
class FileText:
    """A text stored in a file at bytes ``[start, end)``: JSON string content (``escaped``) or plain UTF-8.

    ``nbytes``: its length in UTF-8 bytes once decoded; ``blank``: it holds only whitespace. Pickles as the
    location (worker processes read it themselves)."""

    path: str
    start: int
    end: int
    escaped: bool = True
    nbytes: int = 0
    blank: bool = False

    def chunks(self, size: int | None = None) -> Iterator[str]:
        """The text in pieces of at most about ``size`` characters (default :data:`CHUNK_BYTES`)."""
        size = size or CHUNK_BYTES
        dec: Any = JsonStringDecoder() if self.escaped else codecs.getincrementaldecoder("utf-8")()
        step = dec.feed if self.escaped else dec.decode
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            left = self.end - self.start
            while left > 0:
                data = fh.read(min(size, left))
                if not data:
                    raise InputError(f"{self.path}: shorter than when it was read (changed while in use?)")
                left -= len(data)
                s = step(data)
                if s:
                    yield s
            s = step(b"", True)
            if s:
                yield s

    def read(self) -> str:
        """The whole text (for a consumer that needs it at once)."""
        return "".join(self.chunks())


@dataclass(frozen=True)
class StrText:
    """A long text a library already holds as one string, read in chunks like a :class:`FileText`."""

    text: str

    def chunks(self, size: int | None = None) -> Iterator[str]:
        size = size or CHUNK_BYTES
        for i in range(0, len(self.text), size):
            yield self.text[i:i + size]

    @property
    def blank(self) -> bool:
        return not self.text or self.text.isspace()

    @property
    def nbytes(self) -> int:
        return sum(len(c.encode("utf-8", "surrogatepass")) for c in self.chunks())

    def read(self) -> str:
        return self.text


def text_chunks(text: str | FileText | StrText, size: int | None = None) -> Iterator[str]:
    """``text`` (a string or a long text) in pieces."""
    size = size or CHUNK_BYTES
    if isinstance(text, str):
        yield from (text[i:i + size] for i in range(0, len(text), size))
    else:
        yield from text.chunks(size)


def scan_file_text(path: str | os.PathLike, start: int, end: int, what: str, error: Type[Exception] = InputError) -> FileText:
    """The plain UTF-8 text at bytes ``[start, end)`` of ``path`` as a :class:`FileText`, decoded once to check it
    and measure it (``error`` names ``what`` and the byte of a decoding error)."""
    t = FileText(str(path), start, end, escaped=False)
    nonblank, at = False, start
    try:
        for s in t.chunks():
            nonblank = nonblank or not s.isspace()
            at += len(s.encode("utf-8"))
    except UnicodeDecodeError as e:
        raise error(f"{what}: {path}: not UTF-8 text (byte {at + e.start})") from None
    return FileText(str(path), start, end, escaped=False, nbytes=end - start, blank=not nonblank)


# ------------------------------------------------------------------------------------------ JSON lines
def iter_jsonl_long(path: str | os.PathLike, error: Type[Exception] = ValueError,
                    limit: int | None = None) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSONL file, like :func:`~neuronmoe.utils.io.iter_jsonl`
    (the same errors, line numbers and universal newlines), in bounded memory: a line longer than ``limit`` bytes
    (default :data:`LONG_TEXT_BYTES`) is parsed in pieces, its long string values given as :class:`FileText`."""
    limit = LONG_TEXT_BYTES if limit is None else limit
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None
    with fh:
        i = at = 0
        while True:
            line = fh.readline(limit)
            if not line:
                return
            if len(line) >= limit and not line.endswith(b"\n"):
                i += 1
                rec, at = _long_record(_LongLine(fh, path, at, limit), i, error)
                fh.seek(at)
                if rec is not None:
                    yield i, rec
                continue
            for part in _universal_lines(line, path, at, error):
                i += 1
                rec = _short_record(part, path, i, error)
                if rec is not None:
                    yield i, rec
            at += len(line)


def _universal_lines(line: bytes, path: Path, at: int, error: Type[Exception]) -> list[str]:
    """The lines a text-mode file gives for one ``\\n``-terminated line (a lone ``\\r`` also ends one)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {at + e.start})") from None
    if "\r" not in text:
        return [text]
    t = text.replace("\r\n", "\n").replace("\r", "\n")
    parts = t.split("\n")
    return parts[:-1] if t.endswith("\n") else parts


def _short_record(line: str, path: Path, i: int, error: Type[Exception]) -> dict | None:
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise error(f"{path}:{i}: not valid JSON ({e.msg})") from None
    if not isinstance(rec, dict):
        raise error(f"{path}:{i}: expected a JSON object per line")
    return rec


def _long_record(p: _LongLine, i: int, error: Type[Exception]) -> tuple[dict | None, int]:
    """The object of a long line (None: a blank one) and the offset of the next line."""
    first = p.peek()
    if first in (-1, ord("\n")):
        return None, p.line_end()
    if first != ord("{"):
        raise error(f"{p.path}:{i}: expected a JSON object per line" if first in b'["-0123456789tfn'
                    else f"{p.path}:{i}: not valid JSON (Expecting value)")
    try:
        rec = p.value()
        return rec, p.line_end()
    except UnicodeDecodeError as e:
        raise error(f"{p.path}: not UTF-8 text (byte {p.base + p.pos + e.start})") from None
    except ValueError as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise error(f"{p.path}:{i}: not valid JSON ({msg})") from None


class _LongLine:
    """A recursive-descent JSON parser over one line of ``fh``, reading it :data:`CHUNK_BYTES` at a time."""

    def __init__(self, fh: Any, path: Path, at: int, limit: int) -> None:
        self.fh, self.path, self.limit = fh, path, limit
        fh.seek(at)
        self.buf, self.pos, self.base = b"", 0, at  # base: the file offset of buf[0]

    def more(self) -> bool:
        data = self.fh.read(CHUNK_BYTES)
        if not data:
            return False
        self.buf = self.buf[self.pos:] + data
        self.base += self.pos
        self.pos = 0
        return True

    def peek(self) -> int:
        """The next byte that is not whitespace (not consumed); -1 at the end of the file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _INLINE_WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return -1

    def take(self, what: bytes, message: str) -> None:
        if self.peek() != what[0]:
            raise ValueError(message)
        self.pos += 1

    def value(self) -> Any:
        c = self.peek()
        if c == ord('"'):
            self.pos += 1
            return self.string()
        if c == ord("{"):
            self.pos += 1
            return self.members()
        if c == ord("["):
            self.pos += 1
            return self.items()
        return self.literal()

    def members(self) -> dict:
        out: dict[str, Any] = {}
        if self.peek() == ord("}"):
            self.pos += 1
            return out
        while True:
            self.take(b'"', "Expecting property name enclosed in double quotes")
            key = self.string()
            key = key if isinstance(key, str) else key.read()
            self.take(b":", "Expecting ':' delimiter")
            out[key] = self.value()
            c = self.peek()
            self.pos += 1
            if c == ord("}"):
                return out
            if c != ord(","):
                raise ValueError("Expecting ',' delimiter")

    def items(self) -> list:
        out: list[Any] = []
        if self.peek() == ord("]"):
            self.pos += 1
            return out
        while True:
            out.append(self.value())
            c = self.peek()
            self.pos += 1
            if c == ord("]"):
                return out
            if c != ord(","):
                raise ValueError("Expecting ',' delimiter")

    def literal(self) -> Any:
        """A number, ``true``, ``false`` or ``null`` (what ``json.loads`` reads there)."""
        while True:
            m = _LITERAL_END.search(self.buf, self.pos)
            if m or not self.more():
                break
        end = m.start() if m else len(self.buf)
        token, self.pos = self.buf[self.pos:end], end
        if not token:
            raise ValueError("Expecting value")
        return json.loads(token)

    def string(self) -> str | FileText:
        """The string whose opening quote was just read: a ``str`` up to ``limit`` bytes, else a :class:`FileText`."""
        acc = _StringAccumulator(self.limit)
        start, carried = self.base + self.pos, 0
        while True:
            q, carried = _closing_quote(self.buf, self.pos, carried)
            stop = q if q >= 0 else len(self.buf)
            acc.add(self.buf[self.pos:stop])
            self.pos = stop
            if q >= 0:
                break
            if not self.more():
                raise ValueError("Unterminated string")
        end = self.base + self.pos
        self.pos += 1
        return acc.result(str(self.path), start, end)

    def line_end(self) -> int:
        """After the object: only whitespace up to the newline (or the end of the file); the next line's offset."""
        c = self.peek()
        if c == -1:
            return self.base + self.pos
        if c != ord("\n"):
            raise ValueError("Extra data")
        return self.base + self.pos + 1


class _StringAccumulator:
    """The content of one JSON string, given in pieces: kept while short, else only decoded (checked, measured)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.raw, self.dec = limit, bytearray(), None
        self.nbytes, self.nonblank = 0, False

    def add(self, piece: bytes) -> None:
        if self.dec is None:
            self.raw += piece
            if len(self.raw) <= self.limit:
                return
            self.dec, piece, self.raw = JsonStringDecoder(), bytes(self.raw), bytearray()
        self._count(self.dec.feed(piece))

    def _count(self, s: str) -> None:
        self.nbytes += len(s.encode("utf-8", "surrogatepass"))
        self.nonblank = self.nonblank or (bool(s) and not s.isspace())

    def result(self, path: str, start: int, end: int) -> str | FileText:
        if self.dec is None:
            return json.loads('"' + self.raw.decode("utf-8") + '"')
        self._count(self.dec.feed(b"", final=True))
        return FileText(path, start, end, escaped=True, nbytes=self.nbytes, blank=not self.nonblank)


def _closing_quote(buf: bytes, i: int, carried: int) -> tuple[int, int]:
    """(index of the first unescaped ``"`` in ``buf[i:]`` or -1, and when there is none the number of backslashes
    ``buf`` ends with); ``carried``: the backslashes that ended the previous buffer."""
    j = i
    while True:
        q = buf.find(b'"', j)
        stop = q if q >= 0 else len(buf)
        k = stop
        while k > i and buf[k - 1] == 0x5C:
            k -= 1
        run = stop - k + (carried if k == i else 0)
        if q < 0:
            return -1, run
        if run % 2 == 0:
            return q, 0
        j = q + 1
