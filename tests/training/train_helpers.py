"""Helpers of the training tests (imported by conftest.py and the test modules)."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

_CORPUS = Path(os.path.expanduser("~/.cache/neuronmoe/packages/dataset-build-0.1.11/dataset_build/data"))

_WORDS = {
    "el": "το και της η να με για από στην είναι ότι ένα αυτό σε δεν θα οι τον πολύ".split(),
    "en": "the and of to a in is that it for with as was on be by this are from".split(),
}


def corpus_docs(lang: str) -> list[str]:
    """Paragraphs of the dataset-build corpus (preamble and headings dropped), or synthetic text."""
    iso = {"el": "ell", "en": "eng", "zh": "zho", "es": "spa"}[lang]
    f = _CORPUS / iso / f"{iso}.txt"
    if f.exists():
        lines = [x.strip() for x in f.read_text(encoding="utf-8").splitlines()]
        docs = [x.replace("**", "") for x in lines[1:] if len(x) > 40 and not x.startswith("#")]
        if docs:
            return docs
    rng = random.Random(lang)
    words = _WORDS.get(lang, _WORDS["en"])
    return [" ".join(rng.choice(words) for _ in range(60)) for _ in range(300)]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def make_data_dir(root: Path, new: tuple[str, ...] = ("el",), old: tuple[str, ...] = ("en",)) -> Path:
    """$OUTPUT_DIR/data layout of docs/CONTRACTS.md: train/, replay/, heldout/ (no text shared)."""
    for lang in set(new) | set(old):
        docs = corpus_docs(lang)
        n_held = max(4, len(docs) // 8)
        held, rest = docs[:n_held], docs[n_held:]
        write_jsonl(root / "heldout" / f"{lang}.jsonl", held)
        if lang in new:
            write_jsonl(root / "train" / f"{lang}.jsonl", rest)
        if lang in old:
            write_jsonl(root / "replay" / f"{lang}.jsonl", rest)
    return root


#: settings that make a tiny-model run take a second or two
TINY_SETS = ["cutoff_len=32", "per_device_train_batch_size=4", "max_steps=6", "logging_steps=2",
             "save_steps=3", "save_last=true", "learning_rate=0.003", "bf16=false", "report_to=none", "heldout_max_tokens=256",
             "heldout_block_len=64", "max_samples=60", "replay_max_samples=60"]


def train_settings(stage: int, *, sets=(), flags=None, environ=None, run=None, **fields):
    """:class:`TrainSettings` as the CLI would resolve them (``flags``: as given on the command line; ``fields``:
    fixed by the caller; the environment empty unless given)."""
    from neuronmoe.training.settings import TrainSettings

    if run is not None:
        fields["run_name"] = run
    return TrainSettings.resolve(dict(flags or {}), environ={} if environ is None else environ, sets=list(sets),
                                 stage=stage, **fields)


def run_training(stage: int, *, cache_dir=None, callbacks=(), **kw) -> dict:
    """Resolve the settings (:func:`train_settings`) and train one stage."""
    from neuronmoe.training.run import train

    return train(train_settings(stage, **kw), cache_dir=None if cache_dir is None else str(cache_dir),
                 callbacks=list(callbacks))
