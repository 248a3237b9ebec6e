"""Tiny random-weight models for tests and benchmarks, built from a config in milliseconds.

``tiny_model("llama")`` and friends give a real transformers CausalLM of each supported
architecture with 2-4 layers and hidden size 32-64, saved on request as a local folder (with a
tokenizer borrowed from nothing: a byte-level tokenizer built in memory) so that every CLI
path can be exercised offline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": dict(
        model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=300, max_position_embeddings=512,
        tie_word_embeddings=False,
    ),
    "qwen2": dict(
        model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=300, max_position_embeddings=512,
    ),
    "mistral": dict(
        model_type="mistral", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=300, max_position_embeddings=512,
        sliding_window=None,
    ),
    "gemma3_text": dict(
        model_type="gemma3_text", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=300,
        max_position_embeddings=512, sliding_window=16, layer_types=None,
    ),
}


def tiny_config(arch: str = "llama", **overrides: Any) -> Any:
    from transformers import AutoConfig

    kw = dict(TINY_CONFIGS[arch])
    kw.update(overrides)
    model_type = kw.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **kw)
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = 1, 2, 0
    return cfg


def tiny_model(arch: str = "llama", seed: int = 0, dtype: Any = None, **overrides: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, **overrides), dtype=dtype or torch.float32)
    model.eval()
    return model


def byte_tokenizer(vocab_size: int = 300) -> Any:
    """A byte-level BPE-free tokenizer (256 bytes + specials) usable with any tiny model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {s: i for i, s in enumerate(specials)}
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    for ch in sorted(alphabet):
        vocab.setdefault(ch, len(vocab))
    assert len(vocab) <= vocab_size, (len(vocab), vocab_size)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    return tok


def save_tiny_model(path: str | Path, arch: str = "llama", seed: int = 0, **overrides: Any) -> Path:
    """Save a tiny random model + byte tokenizer as a local HF folder; returns the folder."""
    path = Path(path)
    model = tiny_model(arch, seed=seed, **overrides)
    model.save_pretrained(path)
    byte_tokenizer(model.config.vocab_size).save_pretrained(path)
    return path


class StandInHub:
    """A stand-in of the Hugging Face hub for :mod:`neuronmoe.budget.access` (``HubClient``): gated and missing
    repositories, file listings (``sizes``: ``{(repo, pattern): [bytes, ...]}``), or no network at all."""

    def __init__(self, gated: Any = (), missing: Any = (), offline: bool = False, sizes: dict | None = None) -> None:
        self.gated, self.missing, self.offline = set(gated), set(missing), offline
        self.sizes, self.asked = dict(sizes or {}), []

    def check(self, repo_id: str, repo_type: str) -> None:
        from neuronmoe.budget.access import AccessDenied, HubOffline

        self.asked.append(repo_id)
        if self.offline:
            raise HubOffline("Connection refused")
        if repo_id in self.gated:
            raise AccessDenied(f"gated: accept its terms on https://huggingface.co/{repo_id}")
        if repo_id in self.missing:
            raise AccessDenied("not found, or private and your token cannot see it")

    def file_sizes(self, repo_id: str, repo_type: str, pattern: str) -> list[int]:
        return list(self.sizes.get((repo_id, pattern), []))
