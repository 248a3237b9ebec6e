"""Fixtures for prepare-data: small synthetic corpora in every local source format."""
from __future__ import annotations

from pathlib import Path

import pytest
from data_corpus import paragraphs, write_jsonl

UDHR_HTML = """<!doctype html>
<html><head><title>t</title></head><body>
<h1>Declaration</h1>
<header><h2>Preamble</h2><p>{p0}</p><p>Second preamble paragraph here.</p></header>
<article data-number="1"><h2>Article 1</h2><p>{p1}</p></article>
<article data-number="2"><h2>Article 2</h2><ol><li><p>First &amp; numbered paragraph.</p></li>
<li><p>Second numbered <b>paragraph</b>.</p></li></ol></article>
</body></html>
"""


@pytest.fixture
def udhr_folder(tmp_path: Path) -> Path:
    """Fake ``declaration/`` folder for en, el, de (codes from neuronmoe.languages)."""
    d = tmp_path / "declaration"
    d.mkdir()
    for lang, code in (("en", "eng"), ("el", "ell_monotonic"), ("de", "deu_1996")):
        html = UDHR_HTML.format(p0=f"{lang} preamble of the declaration.", p1=f"All {lang} humans are born free.")
        (d / f"{code}.html").write_text(html, encoding="utf-8")
    return d


@pytest.fixture
def jsonl_dir(tmp_path: Path) -> Path:
    """``<lang>.jsonl`` for en, el, de: 2 paragraphs per record, 160 sentences per language."""
    d = tmp_path / "jsonl"
    for lang in ("en", "el", "de"):
        pars = paragraphs(lang, 160)
        recs = [{"text": "\n".join(pars[i:i + 2]), "id": i} for i in range(0, len(pars), 2)]
        write_jsonl(d / f"{lang}.jsonl", recs)
    return d


@pytest.fixture
def hf_standin(tmp_path: Path) -> Path:
    """A local dataset folder laid out like uonlp/CulturaX: one config per ISO 639-1 code."""
    d = tmp_path / "culturax-standin"
    langs = ("en", "el", "de")
    for lang in langs:
        pars = paragraphs(lang, 200)
        recs = [{"text": p, "timestamp": "2020", "url": f"https://x/{lang}/{i}", "source": "mC4"} for i, p in enumerate(pars)]
        write_jsonl(d / lang / "train.jsonl", recs)
    cfgs = "".join(f"- config_name: {lang}\n  data_files:\n  - split: train\n    path: {lang}/*.jsonl\n" for lang in langs)
    (d / "README.md").write_text(f"---\nconfigs:\n{cfgs}---\n# stand-in\n", encoding="utf-8")
    return d
