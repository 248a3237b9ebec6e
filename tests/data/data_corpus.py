"""Synthetic corpora for the prepare-data tests (imported by conftest.py and the tests)."""
from __future__ import annotations

import json
from pathlib import Path

WORDS = {
    "en": ["river", "stone", "light", "garden", "window", "music", "paper", "forest", "engine", "cloud"],
    "el": ["ποτάμι", "πέτρα", "φως", "κήπος", "παράθυρο", "μουσική", "χαρτί", "δάσος", "μηχανή", "σύννεφο"],
    "de": ["Fluss", "Stein", "Licht", "Garten", "Fenster", "Musik", "Papier", "Wald", "Motor", "Wolke"],
}
START = {"en": "The", "el": "Το", "de": "Der"}


def sentence(lang: str, i: int, extra: int = 0) -> str:
    """A unique sentence (index spelled into the words), optionally padded with ``extra`` words."""
    w = WORDS[lang]
    body = " ".join(w[(i // 10**k) % 10] for k in range(4))
    pad = (" " + " ".join(w[(i + j) % 10] for j in range(extra))) if extra else ""
    return f"{START[lang]} {body} {i}{pad}."


def paragraphs(lang: str, n_sent: int, per_par: int = 4, long_every: int = 0) -> list[str]:
    sents = [sentence(lang, i, extra=40 if long_every and i % long_every == 0 else 0) for i in range(n_sent)]
    return [" ".join(sents[i:i + per_par]) for i in range(0, n_sent, per_par)]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path
