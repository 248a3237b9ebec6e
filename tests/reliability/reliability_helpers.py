"""Helpers of the reliability tests: prepared data with a real manifest, a snapshot of a folder tree."""
from __future__ import annotations

import json
import os
from pathlib import Path

SENTENCES = {
    "en": ["The river runs past the old mill.", "Children play football after school.", "My sister bakes bread on Sundays.",
           "The train to the coast is late.", "He planted tomatoes in the garden.", "Snow covered the quiet village."],
    "el": ["Το ποτάμι περνά δίπλα από τον παλιό μύλο.", "Τα παιδιά παίζουν μπάλα μετά το σχολείο.",
           "Η αδελφή μου ψήνει ψωμί τις Κυριακές.", "Το τρένο για την ακτή αργεί.", "Φύτεψε ντομάτες στον κήπο.",
           "Το χιόνι σκέπασε το ήσυχο χωριό."],
    "tr": ["Nehir eski değirmenin yanından akar.", "Çocuklar okuldan sonra futbol oynar.", "Kız kardeşim pazar günleri ekmek yapar.",
           "Sahile giden tren gecikti.", "Bahçeye domates dikti.", "Kar sessiz köyü kapladı."],
}


def _jsonl(path: Path, recs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")


def write_data(data: Path, tok, fingerprint: str | None = None) -> Path:
    """samples/, train/el, replay/en, heldout/ and a manifest recording every file's sha256 (as prepare-data does)."""
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint
    from neuronmoe.utils.manifest import describe_files

    files = []
    for lang, sents in SENTENCES.items():
        _jsonl(data / "samples" / f"{lang}.jsonl",
               [{"text": s, "lang": lang, "n_tokens": len(tok(s)["input_ids"])} for s in sents])
        _jsonl(data / "heldout" / f"{lang}.jsonl", [{"text": " ".join(sents)}])
        files += [f"samples/{lang}.jsonl", f"heldout/{lang}.jsonl"]
    for lang in SENTENCES:  # UDHR-like paragraphs, parallel by id (the local eval suite reads them)
        _jsonl(data / "udhr" / f"{lang}.jsonl", [{"id": f"a{j}", "article": j, "text": s} for j, s in enumerate(SENTENCES[lang])])
        files.append(f"udhr/{lang}.jsonl")
    docs = {lang: [{"text": " ".join(SENTENCES[lang][i:] + SENTENCES[lang][:i])} for i in range(6)] for lang in SENTENCES}
    _jsonl(data / "train" / "el.jsonl", docs["el"] * 4)
    _jsonl(data / "replay" / "en.jsonl", docs["en"] * 4)
    files += ["train/el.jsonl", "replay/en.jsonl"]
    man = {"stage": "data", "tokenizer_fingerprint": fingerprint or tokenizer_fingerprint(tok),
           "files": describe_files(data, files)}
    (data / "manifest.json").write_text(json.dumps(man))
    return data


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its size and mtime (folders too): equal before and after = nothing written."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return out


