"""The held-out perplexity helper agrees with the model's own loss, scores each document on its own (after one
start token) and handles long documents and the token cap (tests/evaluation/test_bos_scoring.py checks a
BOS-adding tokenizer)."""
from __future__ import annotations

import math

import pytest
import torch

from neuronmoe.testing import byte_tokenizer, tiny_model
from neuronmoe.training.perplexity import document_windows, perplexity, token_blocks


def test_matches_model_loss_per_document():
    tok, model = byte_tokenizer(), tiny_model("llama")
    texts = ["hello world, a held-out line", "another one"]
    blocks = token_blocks(texts, tok, block_len=1000)
    assert len(blocks) == 2 and all(b[0] == tok.bos_token_id for b in blocks)  # one start token per document
    assert tok.eos_token_id not in blocks[0] + blocks[1]  # no EOS scored as text
    nll = 0.0
    with torch.no_grad():
        for b in blocks:
            ids = torch.tensor([b])
            nll += model(input_ids=ids, labels=ids).loss.item() * (len(b) - 1)
    n = sum(len(b) - 1 for b in blocks)
    r = perplexity(model, tok, texts, block_len=1000)
    assert r["tokens"] == n == sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert r["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-4)


def test_windows_overlap_by_one_token_and_predict_each_token_once():
    assert document_windows([10, 11, 12, 13, 14], 1, 3) == [[1, 10, 11], [11, 12, 13], [13, 14]]
    assert document_windows([10, 11, 12], None, 2) == [[10, 11], [11, 12]]
    assert document_windows([], 1, 4) == [] and document_windows([7], None, 4) == []


def test_long_documents_and_cap():
    tok, model = byte_tokenizer(), tiny_model("llama")
    texts = ["abcdefghij" * 5]
    blocks = token_blocks(texts, tok, block_len=16, max_tokens=40)
    assert [len(b) for b in blocks] == [16, 16, 11] and blocks[1][0] == blocks[0][-1]
    r = perplexity(model, tok, texts, block_len=16, max_tokens=40, batch_size=2)
    assert r["tokens"] == 15 + 15 + 10 == 40
    assert 1 < r["perplexity"] < 10 * tok.vocab_size
    with pytest.raises(ValueError, match="no held-out text"):
        perplexity(model, tok, [], block_len=16)
