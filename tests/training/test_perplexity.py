"""The held-out perplexity helper agrees with the model's own loss and handles ragged blocks."""
from __future__ import annotations

import math

import pytest
import torch

from neuronmoe.testing import byte_tokenizer, tiny_model
from neuronmoe.training.perplexity import perplexity, token_blocks


def test_matches_model_loss_on_one_block():
    tok, model = byte_tokenizer(), tiny_model("llama")
    texts = ["hello world, a held-out line", "another one"]
    blocks = token_blocks(texts, tok, block_len=1000)
    assert len(blocks) == 1 and blocks[0][-1] == tok.eos_token_id
    ids = torch.tensor(blocks)
    with torch.no_grad():
        ref = model(input_ids=ids, labels=ids).loss.item()
    r = perplexity(model, tok, texts, block_len=1000)
    assert r["tokens"] == ids.shape[1] - 1
    assert r["perplexity"] == pytest.approx(math.exp(ref), rel=1e-4)


def test_ragged_blocks_and_cap():
    tok, model = byte_tokenizer(), tiny_model("llama")
    texts = ["abcdefghij" * 5]
    blocks = token_blocks(texts, tok, block_len=16, max_tokens=40)
    assert [len(b) for b in blocks] == [16, 16, 8]
    r = perplexity(model, tok, texts, block_len=16, max_tokens=40, batch_size=2)
    assert r["tokens"] == 15 + 15 + 7
    assert 1 < r["perplexity"] < 10 * tok.vocab_size
    with pytest.raises(ValueError, match="no held-out text"):
        perplexity(model, tok, [], block_len=16)
