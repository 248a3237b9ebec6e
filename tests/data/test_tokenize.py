"""Token counting of prepare-data: the fast paths give exactly what the ``transformers`` call gives."""
from __future__ import annotations

import pytest

from neuronmoe.data.tokenize import count_tokens, encoder
from neuronmoe.testing import byte_tokenizer

TEXTS = ["Hello world.", "Καλημέρα σας, τι κάνετε;", "", "日本語の文です。", "x" * 300] * 30


def _reference(tok, texts, special):
    return [len(x) for x in tok(texts, add_special_tokens=special)["input_ids"]]


def _with_bos_template():
    from tokenizers import processors

    tok = byte_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    return tok


@pytest.mark.parametrize("make", [byte_tokenizer, _with_bos_template], ids=["no-specials", "bos-eos-template"])
def test_counts_equal_the_transformers_call(make):
    tok = make()
    count = count_tokens(tok, batch=16)
    assert count(TEXTS, False) == _reference(tok, TEXTS, False)
    assert count(TEXTS, True) == _reference(tok, TEXTS, True)
    assert encoder(tok)(TEXTS) == tok(TEXTS, add_special_tokens=False)["input_ids"]


def test_template_adds_two_tokens_to_every_text():
    tok = _with_bos_template()
    plain, special = count_tokens(tok)(TEXTS, False), count_tokens(tok)(TEXTS, True)
    assert [s - p for p, s in zip(plain, special)] == [2] * len(TEXTS)


def test_a_backend_that_differs_falls_back_to_the_transformers_call(monkeypatch):
    """When the Rust backend does not give the ``transformers`` call's ids (checked on the first batch),
    every count comes from ``tokenizer(...)``."""
    from neuronmoe.data import tokenize

    tok = _with_bos_template()
    real = tokenize._backend

    def off_by_one(tokenizer, special=False):
        fast = real(tokenizer, special)
        return lambda texts: [type("E", (), {"ids": e.ids + [0], "__len__": lambda self: len(self.ids)})()
                              for e in fast(texts)]

    monkeypatch.setattr(tokenize, "_backend", off_by_one)
    count = count_tokens(tok, batch=16)
    assert count(TEXTS, True) == _reference(tok, TEXTS, True)
    assert count(TEXTS, False) == _reference(tok, TEXTS, False)


@pytest.mark.filterwarnings("ignore:This sequence already has")
def test_text_dependent_special_tokens_byt5():
    """ByT5 (no Rust backend) adds EOS only where a text does not end with it: counts stay exact."""
    from transformers import ByT5Tokenizer

    tok = ByT5Tokenizer()
    texts = ["hello world"] * 70 + ["bye</s>", "plain"]
    assert count_tokens(tok, batch=16)(texts, True) == _reference(tok, texts, True)


def test_embedded_tokenizer(embedded_model_dir):
    from neuronmoe.models import load_tokenizer

    tok = load_tokenizer(str(embedded_model_dir))
    count = count_tokens(tok)
    assert count(TEXTS, True) == _reference(tok, TEXTS, True)
    assert count(TEXTS, False) == _reference(tok, TEXTS, False)
