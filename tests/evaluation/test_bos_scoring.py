"""Bits per byte and held-out perplexity score exactly a document's own tokens, conditioned on one start token,
whether the tokenizer adds a BOS by default (Llama-3 style) or not: checked against a direct computation."""
from __future__ import annotations

import pytest
import torch

from neuronmoe.testing import byte_tokenizer, tiny_model

DOCS = ["A held-out document, scored as text.", "Ένα δεύτερο κείμενο με λέξεις."]


def _tokenizer(adds_bos: bool):
    """The byte tokenizer; with ``adds_bos`` a post-processor puts BOS in front of every encoding (as Llama-3's)."""
    from tokenizers.processors import TemplateProcessing

    tok = byte_tokenizer()
    if adds_bos:
        tok._tokenizer.post_processor = TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", tok.bos_token_id)])
    return tok


def _direct_loglik(model, tok, text: str) -> tuple[float, int]:
    """log P(document tokens | BOS) computed from the model's logits, and the number of document tokens."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    inp = torch.tensor([[tok.bos_token_id] + ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=inp).logits[0].double(), dim=-1)
    return float(sum(logp[t, ids[t]] for t in range(len(ids)))), len(ids)


@pytest.mark.parametrize("adds_bos", [True, False], ids=["adds-bos", "no-bos"])
def test_tokenizer_fixture_behaves_as_named(adds_bos):
    tok = _tokenizer(adds_bos)
    ids = tok("abc")["input_ids"]
    assert (ids[0] == tok.bos_token_id) is adds_bos and ids[-3:] == tok("abc", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("adds_bos", [True, False], ids=["adds-bos", "no-bos"])
def test_rolling_loglikelihood_is_the_documents_own_tokens_after_one_bos(adds_bos):
    from lm_eval.api.instance import Instance

    from neuronmoe.evaluation.runner import make_lm

    tok, model = _tokenizer(adds_bos), tiny_model("llama")
    lm = make_lm(model, tok, batch_size=2)
    reqs = [Instance(request_type="loglikelihood_rolling", doc={"text": d}, arguments=(d,), idx=i) for i, d in enumerate(DOCS)]
    got = lm.loglikelihood_rolling(reqs, disable_tqdm=True)
    for d, g in zip(DOCS, got):
        ll, _ = _direct_loglik(model, tok, d)
        assert g == pytest.approx(ll, rel=1e-5, abs=1e-4), d
    # multiple-choice requests keep lm-eval's own encoding: the context starts with the tokenizer's BOS
    assert (lm.tok_encode("Question:")[0] == tok.bos_token_id) is adds_bos


@pytest.mark.parametrize("adds_bos", [True, False], ids=["adds-bos", "no-bos"])
def test_training_heldout_perplexity_follows_the_same_rule(adds_bos):
    from neuronmoe.training.perplexity import perplexity

    tok, model = _tokenizer(adds_bos), tiny_model("llama")
    lls, ns = zip(*(_direct_loglik(model, tok, d) for d in DOCS))
    r = perplexity(model, tok, DOCS, block_len=512)
    assert r["tokens"] == sum(ns)
    assert r["nll"] * r["tokens"] == pytest.approx(-sum(lls), rel=1e-5)
