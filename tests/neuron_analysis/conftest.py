"""Fixtures: tiny samples in the data stage's format, tokenised by the tiny model's tokenizer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

SENTENCES = {
    "en": ["The cat sat on the mat.", "A dog runs in the park today.", "We read books at night.",
           "It is raining again.", "She walks to school.", "Birds sing in the morning light."],
    "el": ["Η γάτα κάθεται στο χαλί.", "Ο σκύλος τρέχει στο πάρκο.", "Διαβάζουμε βιβλία το βράδυ.",
           "Βρέχει πάλι σήμερα.", "Πηγαίνει στο σχολείο.", "Τα πουλιά τραγουδούν."],
    "tr": ["Kedi halının üstünde oturuyor.", "Köpek parkta koşuyor.", "Geceleri kitap okuruz.",
           "Yine yağmur yağıyor.", "Okula yürüyor.", "Kuşlar sabah şarkı söyler."],
}


def write_samples(data_dir: Path, tokenizer, sentences: dict[str, list[str]] = SENTENCES, fingerprint: str | None = None) -> Path:
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    (data_dir / "samples").mkdir(parents=True, exist_ok=True)
    for lang, sents in sentences.items():
        with open(data_dir / "samples" / f"{lang}.jsonl", "w", encoding="utf-8") as fh:
            for s in sents:
                fh.write(json.dumps({"text": s, "lang": lang, "n_tokens": len(tokenizer(s)["input_ids"])}, ensure_ascii=False) + "\n")
    fp = fingerprint or tokenizer_fingerprint(tokenizer)
    (data_dir / "manifest.json").write_text(json.dumps({"stage": "data", "tokenizer_fingerprint": fp}))
    return data_dir


@pytest.fixture(scope="session")
def tiny_tok(tiny_model_dir):
    from neuronmoe.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture
def out_dir(tmp_path, tiny_tok):
    """$OUTPUT_DIR with data/ prepared for the tiny model."""
    write_samples(tmp_path / "data", tiny_tok)
    return tmp_path


def tiny_cfg(model_dir, out: Path, **kw):
    """Resolved settings of the stage for the tiny model (no environment variables read)."""
    from neuronmoe.neuron_analysis.settings import NeuronSettings

    cfg = {"languages": ["en", "el", "tr"], "metric": "ap", "top_k": 20, "ap_threshold": 0.5, "pool": "mean",
           "include_bos": True, "modules": None, "batch_size": 4, "max_length": 256, "dtype": "float32",
           "lape_quantile": 0.95, "ap_chunk_mb": 1, "model": str(model_dir), "output_dir": str(out),
           "data_dir": None, "device": "cpu", "force": False, "progress": False}
    cfg.update(kw)
    return NeuronSettings.resolve(environ={}, **cfg)


@pytest.fixture
def samples_writer():
    """write_samples(data_dir, tokenizer, sentences=..., fingerprint=...) as a fixture."""
    return write_samples


@pytest.fixture
def make_cfg(tiny_model_dir):
    """A resolved stage config for the tiny model: make_cfg(out_dir, **overrides)."""
    return lambda out, **kw: tiny_cfg(tiny_model_dir, out, **kw)
