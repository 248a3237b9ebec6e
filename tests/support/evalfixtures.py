"""Helpers shared by the evaluation tests (importable: the test folder is on sys.path)."""
from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = {
    "en": "everyone right freedom dignity person equal nations protection against society education "
          "marriage family property thought conscience religion opinion expression assembly government "
          "work leisure standard living health motherhood childhood culture community duties limitations".split(),
    "el": "καθένας δικαίωμα ελευθερία αξιοπρέπεια πρόσωπο ισότητα έθνη προστασία κοινωνία εκπαίδευση "
          "γάμος οικογένεια ιδιοκτησία σκέψη συνείδηση θρησκεία γνώμη έκφραση συνάθροιση κυβέρνηση "
          "εργασία ανάπαυση επίπεδο διαβίωση υγεία μητρότητα παιδική πολιτισμός κοινότητα υποχρεώσεις".split(),
}
SHORT = {"en": "the of and to in has".split(), "el": "το της και να σε έχει".split()}


def make_paragraphs(lang: str, n: int = 12, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        words = []
        for _ in range(rng.randint(14, 24)):
            words.append(rng.choice(WORDS[lang]) if rng.random() < 0.6 else rng.choice(SHORT[lang]))
        text = " ".join(words).capitalize() + "."
        out.append({"id": f"{k // 2}-{k % 2 + 1}", "article": k // 2, "text": text})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


