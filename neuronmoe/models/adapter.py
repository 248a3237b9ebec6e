"""Loading a trained MoE adapter folder: one check and one loader for every stage that reads one (``evaluate
--adapter``, ``train --stage 2 --init-adapter``, ``export --adapter``, ``analyze-experts``).

* :func:`check_adapter_folder`: the folder exists, ``adapter_config.json`` is a JSON object, the weights
  (``adapter_model.safetensors``, or ``.bin``) exist and a safetensors file has exactly the size its header
  promises, and, when the folder is a training run's ``adapter/``, every file still has the sha256 the run's
  ``manifest.json`` recorded. Each problem is one error naming the file.
* :func:`load_adapter`: the check, then ``PeftModel.from_pretrained`` on the folder's absolute path. PEFT looks
  a folder without weights up on the Hugging Face hub, using the local path as a repository id: after the check
  that cannot happen. An adapter whose weights do not fit the base (another base without a recorded fingerprint)
  is one line, not PyTorch's ``size mismatch`` traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from neuronmoe.errors import InputError, MissingInputError

#: the weight files PEFT reads, in its order of preference
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def check_adapter_folder(path: str | Path, flag: str = "--adapter") -> dict[str, Any]:
    """The adapter's ``adapter_config.json`` when the folder is complete and unchanged; else one error naming
    the folder or file (see the module docstring)."""
    cfg = read_adapter_config(path, flag)
    check_adapter_weights(path, flag)
    return cfg


def read_adapter_config(path: str | Path, flag: str = "--adapter") -> dict[str, Any]:
    """``adapter_config.json`` of an adapter folder (a JSON object); the weights are not looked at."""
    from neuronmoe.utils.io import read_json

    p = Path(path)
    if not p.is_dir():
        raise MissingInputError(f"{flag} {path}: no such directory" + (" (a file, not an adapter folder)"
                                                                        if p.exists() else ""))
    cfg_path = p / "adapter_config.json"
    if not cfg_path.is_file():
        raise MissingInputError(f"{flag} {path}: no adapter_config.json (not a PEFT adapter folder)")
    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise InputError(f"{cfg_path}: not an adapter config (a JSON object expected)")
    return cfg


def check_adapter_weights(path: str | Path, flag: str = "--adapter") -> Path:
    """The adapter's weight file: present, whole (a safetensors file has the size its header promises) and, for a
    training run's ``adapter/``, with the sha256 the run's manifest recorded (config too)."""
    from neuronmoe.utils.checks import check_input_files, safetensors_problem
    from neuronmoe.utils.manifest import read_stage_manifest

    p = Path(path)
    cfg_path = p / "adapter_config.json"
    weights = next((p / n for n in WEIGHT_FILES if (p / n).is_file()), None)
    if weights is None:
        raise MissingInputError(f"{p / WEIGHT_FILES[0]}: missing: the adapter folder has no weights; copy the "
                                f"whole adapter folder again (or retrain)")
    problem = safetensors_problem(weights) if weights.suffix == ".safetensors" else None
    if problem:
        raise InputError(f"{weights}: {problem}; copy the adapter again (or retrain)")
    man = read_stage_manifest(p.parent) if (p.parent / "manifest.json").is_file() else None
    if man is not None and any(str(k).startswith(f"{p.name}/") for k in man.get("files", {})):
        check_input_files(p.parent, man, [cfg_path, weights])  # a training run's adapter: as the run wrote it
    return weights


def load_adapter(model: Any, path: str | Path, flag: str = "--adapter", **kwargs: Any) -> Any:
    """``PeftModel.from_pretrained(model, path, **kwargs)`` after :func:`check_adapter_folder`; a weight shape
    that does not fit ``model`` is an :class:`~neuronmoe.utils.checks.BaseModelMismatchError`."""
    from peft import PeftModel

    from neuronmoe import register_peft
    from neuronmoe.models.fastpath import contiguous_output_head
    from neuronmoe.utils.checks import BaseModelMismatchError

    check_adapter_folder(path, flag)
    from neuronmoe.utils.fingerprint import config_fingerprint

    check_adapter_fits(path, config_fingerprint(getattr(model, "config", model)), flag)
    register_peft()
    contiguous_output_head(model)  # a model not loaded through load_model (frozen heads need it most)
    try:
        return PeftModel.from_pretrained(model, str(Path(path).resolve()), **kwargs)
    except RuntimeError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), None)
        if detail is None:
            raise
        raise BaseModelMismatchError(f"{flag} {path}: made for another base model (its weights do not fit: "
                                     f"{detail}); pass the --model it was trained on") from None


def check_adapter_fits(path: str | Path, base_fp: dict[str, Any], flag: str = "--adapter") -> None:
    """The shapes in the adapter's safetensors header fit the base (``base_fp``: its
    :func:`~neuronmoe.utils.fingerprint.config_fingerprint`): each router ``[E, hidden]``, each expert's
    gate/up ``[intermediate, hidden]`` and down ``[hidden, intermediate]``, layers below the base's count.
    Reads only the header, so an adapter of another base (without a recorded fingerprint) is one line before
    any weights load."""
    import re

    from safetensors import safe_open

    from neuronmoe.utils.checks import BaseModelMismatchError

    weights = Path(path) / WEIGHT_FILES[0]
    if not weights.is_file():
        return
    h, i, n = base_fp.get("hidden_size"), base_fp.get("intermediate_size"), base_fp.get("num_layers")
    want = {"router": (None, h), "gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}
    with safe_open(str(weights), "pt") as f:
        for key in f.keys():
            m = re.search(r"layers\.(\d+)\.mlp\.moe_(?:router|experts\.\d+\.(gate_proj|up_proj|down_proj))\.weight$", key)
            if m is None:
                continue
            shape = list(f.get_slice(key).get_shape())
            expect = want[m.group(2) or "router"]
            bad = n is not None and int(m.group(1)) >= n
            bad = bad or len(shape) != 2 or any(e is not None and s != e for s, e in zip(shape, expect))
            if bad:
                raise BaseModelMismatchError(
                    f"{flag} {path}: made for another base model ({key} has shape {shape}; this base has "
                    f"{n} layers, hidden_size {h}, intermediate_size {i}); pass the --model it was trained on")
