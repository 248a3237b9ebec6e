"""The cross-stage rules of neuronmoe.utils, one test per rule (every stage calls these functions)."""
from __future__ import annotations

import json
import logging
import warnings

import pytest

from neuronmoe.testing import tiny_config
from neuronmoe.utils.checks import (
    BaseModelMismatchError,
    TokenizerMismatchError,
    check_data_tokenizer,
    check_fits_base,
    fingerprint_mismatch,
)
from neuronmoe.utils.fingerprint import config_fingerprint
from neuronmoe.utils.io import iter_jsonl, read_texts, sha256_file


# ---- rule: this allocation / adapter fits this base model ------------------------------------------------
def test_fits_base_accepts_the_same_model_and_refuses_others():
    cfg = tiny_config("llama")
    fp = config_fingerprint(cfg)
    check_fits_base([2, 1, 3], fp, cfg, "allocation a.json")  # same shape: fine (config or fingerprint dict)
    check_fits_base([2, 1, 3], None, fp, "allocation a.json")  # nothing recorded: the layer count alone
    with pytest.raises(BaseModelMismatchError, match=r"^allocation a.json: made for another base model "
                                                     r"\(4 layers, the base model \(llama\) has 3\)$"):
        check_fits_base([2, 1, 1, 2], None, cfg, "allocation a.json")
    wide = config_fingerprint(tiny_config("llama", hidden_size=64, head_dim=16))
    with pytest.raises(BaseModelMismatchError, match=r"\(hidden_size: recorded 64, this model 32\); pass --model X$"):
        check_fits_base([2, 1, 3], wide, cfg, "--adapter d", hint="pass --model X")
    # both problems at once: the layer count is said once, then the other keys
    deep = config_fingerprint(tiny_config("llama", num_hidden_layers=4, hidden_size=64, head_dim=16))
    with pytest.raises(BaseModelMismatchError) as e:
        check_fits_base([2, 1, 1, 2], deep, cfg, "x")
    assert str(e.value) == "x: made for another base model (4 layers, the base model (llama) has 3; " \
                           "hidden_size: recorded 64, this model 32)"


def test_fits_base_vocab_size_only_warns():
    cfg = tiny_config("llama")
    fp = dict(config_fingerprint(cfg), vocab_size=12345)
    with pytest.warns(UserWarning, match="vocab_size 12345"):
        check_fits_base([2, 1, 3], fp, cfg, "adapter")
    assert fingerprint_mismatch(fp, config_fingerprint(cfg)) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_fits_base([2, 1, 3], dict(fp, vocab_size=None), cfg, "adapter")


# ---- rule: the data was prepared with this tokenizer ------------------------------------------------------
def test_data_tokenizer_policy(tmp_path, caplog):
    d = tmp_path / "data"
    d.mkdir()
    with caplog.at_level(logging.WARNING, logger="neuronmoe.checks"):
        assert check_data_tokenizer(d, "abc") is None  # no manifest: cannot check, warns, goes on
    assert "no data manifest" in caplog.text
    (d / "manifest.json").write_text(json.dumps({"stage": "data"}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="neuronmoe.checks"):
        assert check_data_tokenizer(d, "abc") == {"stage": "data"}  # no fingerprint recorded: warns
    assert "no tokenizer_fingerprint" in caplog.text
    (d / "manifest.json").write_text(json.dumps({"tokenizer_fingerprint": "abc"}))
    assert check_data_tokenizer(d, "abc") == {"tokenizer_fingerprint": "abc"}
    with pytest.raises(TokenizerMismatchError, match=r"manifest.json: data prepared with another tokenizer "
                                                     r"\(fingerprint abc, the model --model m has xyz\)"):
        check_data_tokenizer(d, "xyz", "m")


# ---- rule: one JSONL reader -----------------------------------------------------------------------------
def test_iter_jsonl_names_file_and_line_or_skips_cut_lines(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1}\n\n{"step": 2}\n{"step": 3, "lo')
    with pytest.raises(ValueError, match=r"m.jsonl:4: not valid JSON"):
        list(iter_jsonl(p))
    assert [r["step"] for _, r in iter_jsonl(p, skip_invalid=True)] == [1, 2]
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(KeyError, match=r"m.jsonl:2: expected a JSON object"):
        list(iter_jsonl(p, error=KeyError))
    with pytest.raises(ValueError, match="cannot read"):
        list(iter_jsonl(tmp_path / "none.jsonl"))


def test_read_texts_one_policy(tmp_path):
    p = tmp_path / "el.jsonl"
    p.write_text("".join(json.dumps({"text": t, "lang": "el"}) + "\n" for t in ("α", "β", "γ")))
    assert read_texts(p) == ["α", "β", "γ"] and read_texts(p, "el", limit=2) == ["α", "β"]
    with pytest.raises(ValueError, match=r"el.jsonl:1: a text of language 'el' in the file of 'tr'"):
        read_texts(p, "tr")
    with pytest.raises(FileNotFoundError, match=r"hu.jsonl: no such data file \(language 'hu'\)"):
        read_texts(tmp_path / "hu.jsonl", "hu")
    p.write_text('{"text": "ok"}\n{"txt": "x"}\n')
    with pytest.raises(ValueError, match=r"el.jsonl:2: expected a JSON object with a 'text' field"):
        read_texts(p)
    p.write_text("\n")
    with pytest.raises(ValueError, match=r"el.jsonl: no texts"):
        read_texts(p)


# ---- rule: one sha256 -------------------------------------------------------------------------------------
def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    data = bytes(range(256)) * 9000  # more than one read chunk
    (tmp_path / "b").write_bytes(data)
    assert sha256_file(tmp_path / "b") == hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "b", chunk=7) == hashlib.sha256(data).hexdigest()


def test_did_you_mean_names_the_closest_known_names_or_nothing():
    from neuronmoe.utils.checks import did_you_mean

    assert did_you_mean("llama-le", ["llama-el", "qwen-el", "llama-tr-hu"]).startswith(" (did you mean llama-el")
    assert did_you_mean("papr", {"paper": 1, "local": 2}) == " (did you mean paper?)"
    assert did_you_mean("zzzz", ["paper", "local"]) == ""
