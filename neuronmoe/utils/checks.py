"""Cross-stage checks: one function per rule, used by every stage that applies the rule.

* :func:`check_fits_base`: an allocation or adapter fits this base model (the layer count, and the
  strict keys of the recorded ``base_model_fingerprint``; a different ``vocab_size`` only warns,
  since the MoE weights do not depend on it).
* :func:`check_data_tokenizer`: a prepared-data folder was tokenised with this model's tokenizer.
  Policy: a recorded fingerprint that differs is an error; a folder without ``manifest.json``
  (data not written by ``neuronmoe prepare-data``, e.g. your own JSONL files) or a manifest without
  ``tokenizer_fingerprint`` cannot be checked and gives a warning, and the stage goes on.

Message style: ``<what>: <problem> (<details>); <what to do>``, one line, naming the file or flag.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger("neuronmoe.checks")

#: fingerprint fields an adapter or allocation must match exactly (vocab_size only warns)
STRICT_FINGERPRINT_KEYS = ("model_type", "num_layers", "hidden_size", "intermediate_size")


class BaseModelMismatchError(ValueError):
    """An allocation or adapter made for another base model."""


class TokenizerMismatchError(ValueError):
    """Prepared data tokenised with another tokenizer than the model's."""


def fingerprint_mismatch(recorded: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Differences on :data:`STRICT_FINGERPRINT_KEYS`, as ``"key: recorded X, this model Y"`` (empty: compatible)."""
    return [f"{key}: recorded {recorded[key]!r}, this model {actual.get(key)!r}"
            for key in STRICT_FINGERPRINT_KEYS
            if recorded.get(key) is not None and recorded[key] != actual.get(key)]


def check_fits_base(experts_per_layer: Sequence[int] | None, recorded_fingerprint: Any, base: Any, what: str,
                    hint: str = "") -> None:
    """Raise :class:`BaseModelMismatchError` when an allocation/adapter does not fit ``base``.

    ``experts_per_layer``: its per-layer expert counts (None: not known); ``recorded_fingerprint``: its
    ``base_model_fingerprint`` (None: not recorded); ``base``: the base model's transformers config (or
    model) or its :func:`~neuronmoe.utils.fingerprint.config_fingerprint`; ``what`` names the input in
    the message (``"allocation outputs/allocation/x.json"``); ``hint`` is appended as the remedy.
    """
    if isinstance(base, dict):
        actual = base
    else:
        from neuronmoe.utils.fingerprint import config_fingerprint

        actual = config_fingerprint(getattr(base, "config", base))
    n = actual.get("num_layers")
    problems: list[str] = []
    if experts_per_layer is not None and len(experts_per_layer) != n:
        problems.append(f"{len(experts_per_layer)} layers, the base model ({actual.get('model_type')}) has {n}")
    recorded = recorded_fingerprint if isinstance(recorded_fingerprint, dict) else {}
    problems += [p for p in fingerprint_mismatch(recorded, actual) if not (problems and p.startswith("num_layers:"))]
    if problems:
        raise BaseModelMismatchError(f"{what}: made for another base model ({'; '.join(problems)})"
                                     + (f"; {hint}" if hint else ""))
    if recorded.get("vocab_size") not in (None, 0, actual.get("vocab_size")):
        warnings.warn(f"{what}: base vocab_size {recorded.get('vocab_size')} != this model's {actual.get('vocab_size')} "
                      f"(the MoE weights do not depend on it)", stacklevel=2)


def check_data_tokenizer(data_dir: str | Path, tokenizer_fp: str, model: str | None = None) -> dict[str, Any] | None:
    """Check ``data_dir/manifest.json``'s ``tokenizer_fingerprint`` against ``tokenizer_fp``; returns the manifest.

    Raises :class:`TokenizerMismatchError` when they differ; warns (and returns what there is) when the
    manifest or its fingerprint is missing. See the module docstring for the policy.
    """
    from neuronmoe.utils.io import read_json

    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        log.warning("%s: no data manifest, so the tokenizer the data was prepared with cannot be checked "
                    "(data not written by `neuronmoe prepare-data`?)", path)
        return None
    man = read_json(path)
    recorded = man.get("tokenizer_fingerprint") if isinstance(man, dict) else None
    if not recorded:
        log.warning("%s: no tokenizer_fingerprint recorded, so the tokenizer cannot be checked", path)
        return man if isinstance(man, dict) else None
    if recorded != tokenizer_fp:
        m = f" --model {model}" if model else ""
        raise TokenizerMismatchError(
            f"{path}: data prepared with another tokenizer (fingerprint {recorded}, the model{m} has {tokenizer_fp}); "
            f"rerun `neuronmoe prepare-data`{m}, or pass the --model the data was prepared for"
        )
    return man
