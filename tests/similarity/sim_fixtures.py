"""Texts and a prepared-data writer for the similarity tests (the sentences are our own)."""
from __future__ import annotations

import json
from pathlib import Path

TEXTS = {
    "en": [
        "The river runs past the old mill and into the valley.",
        "We met at the station early in the morning.",
        "Bread, cheese and olives were on the table.",
        "She wrote a long letter to her brother in the city.",
        "The children played in the garden until it got dark.",
        "Rain is expected in the north later this week.",
    ],
    "el": [
        "Το ποτάμι περνά δίπλα από τον παλιό μύλο.",
        "Συναντηθήκαμε στον σταθμό νωρίς το πρωί.",
        "Ψωμί, τυρί και ελιές ήταν στο τραπέζι.",
        "Έγραψε ένα μεγάλο γράμμα στον αδελφό της.",
        "Τα παιδιά έπαιζαν στον κήπο μέχρι να νυχτώσει.",
        "Αναμένεται βροχή στον βορρά αργότερα αυτή την εβδομάδα.",
    ],
    "tr": [
        "Nehir eski değirmenin yanından geçiyor.",
        "İstasyonda sabah erkenden buluştuk.",
        "Masada ekmek, peynir ve zeytin vardı.",
    ],
}


def write_data(root: Path, langs=("en", "el"), split="samples", fingerprint: str | None = None) -> Path:
    d = Path(root) / "data" / split
    d.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        with open(d / f"{lang}.jsonl", "w", encoding="utf-8") as fh:
            for t in TEXTS[lang]:
                fh.write(json.dumps({"text": t, "lang": lang}, ensure_ascii=False) + "\n")
    if fingerprint is not None:
        (Path(root) / "data" / "manifest.json").write_text(json.dumps({"tokenizer_fingerprint": fingerprint}))
    return Path(root) / "data"
