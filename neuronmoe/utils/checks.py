"""Cross-stage checks: one function per rule, used by every stage that applies the rule.

* :func:`check_fits_base`: an allocation or adapter fits this base model (the layer count, and the
  strict keys of the recorded ``base_model_fingerprint``; a different ``vocab_size`` only warns,
  since the MoE weights do not depend on it).
* :func:`check_data_tokenizer`: a prepared-data folder was tokenised with this model's tokenizer.
  Policy: a recorded fingerprint that differs is an error; a folder without ``manifest.json``
  (data not written by ``neuronmoe prepare-data``, e.g. your own JSONL files) or a manifest without
  ``tokenizer_fingerprint`` cannot be checked and gives a warning, and the stage goes on.
* :func:`check_input_files`: the files a stage reads from an upstream folder still have the sha256 the
  upstream manifest recorded (a file edited or replaced since is an error; a file the manifest does
  not list, or a folder without a manifest, cannot be checked and is read as it is).
* :func:`check_checkpoint`: a training checkpoint folder is complete and loadable (``--resume``).
* :func:`check_range`: a number is inside its allowed range (the flag named in the message).

Message style: ``<what>: <problem> (<details>); <what to do>``, one line, naming the file or flag.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Sequence

from neuronmoe.errors import ConfigError, InputError

log = logging.getLogger("neuronmoe.checks")

#: fingerprint fields an adapter or allocation must match exactly (vocab_size only warns)
STRICT_FINGERPRINT_KEYS = ("model_type", "num_layers", "hidden_size", "intermediate_size")


class BaseModelMismatchError(InputError):
    """An allocation or adapter made for another base model."""


class TokenizerMismatchError(InputError):
    """Prepared data tokenised with another tokenizer than the model's."""


class InputChangedError(InputError):
    """An input file no longer has the sha256 its upstream manifest recorded."""


class CheckpointError(InputError):
    """A training checkpoint that is incomplete or cannot be read."""


def did_you_mean(name: str, known: Any, n: int = 2) -> str:
    """`` (did you mean a, b?)`` for the closest of ``known`` to a misspelt ``name``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def check_range(flag: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False, hint: str = "") -> Any:
    """Return ``value`` if ``lo <= value <= hi`` (``<`` with ``lo_open``/``hi_open``); else a ValueError
    naming ``flag``: ``--ap-threshold: 2.0 is out of range [0, 1]``. None passes (not set)."""
    if value is None:
        return value
    bad = ((lo is not None and (value <= lo if lo_open else value < lo))
           or (hi is not None and (value >= hi if hi_open else value > hi)))
    if bad or value != value:  # NaN is never in range
        rng = (("(" if lo_open or lo is None else "[") + ("-inf" if lo is None else f"{lo:g}") + ", "
               + ("inf" if hi is None else f"{hi:g}") + (")" if hi_open or hi is None else "]"))
        raise ConfigError(f"{flag}: {value!r} is out of range {rng}" + (f"; {hint}" if hint else ""))
    return value


def check_input_files(folder: str | Path, manifest: dict[str, Any] | None, paths: Sequence[str | Path]) -> dict[str, str]:
    """``{path relative to folder: sha256}`` of ``paths``, each equal to what ``manifest["files"]`` recorded.

    Raises :class:`InputChangedError` naming the first file that changed since its stage wrote it. Files the
    manifest does not list (or no manifest) are hashed but cannot be checked; missing files are left to the
    reader, which names them.
    """
    from neuronmoe.utils.io import sha256_file
    from neuronmoe.utils.manifest import check_manifest_shape

    folder = Path(folder)
    if manifest is not None:
        check_manifest_shape(manifest, folder / "manifest.json")
    recorded = (manifest or {}).get("files") or {}
    out: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        if not p.is_file():
            continue
        try:
            rel = p.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            rel = str(p)
        digest = sha256_file(p)
        out[rel] = digest
        want = recorded.get(rel, {}).get("sha256") if isinstance(recorded.get(rel), dict) else None
        if want is not None and want != digest:
            raise InputChangedError(
                f"{p}: changed since the stage that wrote it finished (sha256 {digest[:12]}, {folder / 'manifest.json'} "
                f"records {want[:12]}); rerun that stage (e.g. `neuronmoe prepare-data --force`) or restore the file")
    return out


_UNSET: Any = object()


def verify_inputs(folder: str | Path, paths: Sequence[str | Path], manifest: Any = _UNSET,
                  what: str = "") -> dict[str, str]:
    """The one check every stage makes before it starts: each of ``paths`` (files it reads from the producing
    stage's ``folder``) still has the sha256 that ``folder/manifest.json`` recorded. Returns ``{relative path:
    sha256}`` (what the reading stage records as its inputs).

    ``manifest``: the folder's manifest when the caller has read it already (None: the folder has none).
    A malformed manifest is an error; a changed file is an error naming it (:class:`InputChangedError`); a
    folder without a manifest (your own files, not written by a stage) is read as it is, with one warning.
    """
    from neuronmoe.utils.manifest import read_stage_manifest

    folder = Path(folder)
    man = read_stage_manifest(folder) if manifest is _UNSET else manifest
    if man is None and any(Path(p).is_file() for p in paths) and str(folder) not in _WARNED:
        _WARNED.add(str(folder))
        log.warning("%s: no manifest.json, so the files read from it%s cannot be checked against what their "
                    "stage wrote (not written by neuronmoe?)", folder, f" ({what})" if what else "")
    return check_input_files(folder, man, paths)


_WARNED: set[str] = set()


def check_checkpoint(path: str | Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a complete, readable HF Trainer checkpoint:
    ``trainer_state.json`` (valid JSON), the adapter/model weights (``*.safetensors`` with a readable header and
    the size that header promises, or ``*.bin``) and, when present, ``optimizer.pt``/``scheduler.pt``/
    ``rng_state*.pth`` that ``torch.load`` reads."""
    import json

    path = Path(path)
    state = path / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{state}: missing or not valid JSON ({type(e).__name__})") from None
    weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
    if not weights:
        raise CheckpointError(f"{path}: no model weights (*.safetensors or *.bin)")
    for w in weights:
        problem = safetensors_problem(w) if w.suffix == ".safetensors" else None
        if problem:
            raise CheckpointError(f"{w}: {problem}")
    for name in ("optimizer.pt", "scheduler.pt", *sorted(p.name for p in path.glob("rng_state*.pth"))):
        f = path / name
        if not f.exists():
            continue
        _check_torch_file(f)


def safetensors_problem(w: str | Path) -> str | None:
    """What is wrong with a ``*.safetensors`` file (``"truncated (N bytes, its header promises M)"``, ``"not a
    readable safetensors file (...)"``), or None: its header parses and the file has exactly the size the header
    promises. Reads only the header."""
    import json
    import struct

    w = Path(w)
    try:
        size = w.stat().st_size
        with open(w, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            if n > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(fh.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error) as e:
        return f"not a readable safetensors file ({e})"
    if 8 + n + end != size:
        return f"truncated ({size} bytes, its header promises {8 + n + end})"
    return None


def _check_torch_file(f: Path) -> None:
    """A ``torch.save`` file is a zip archive: its central directory and every member's CRC must be intact
    (a cut file loses the directory at its end). Checked without unpickling."""
    import zipfile

    try:
        with zipfile.ZipFile(f) as z:
            bad = z.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{f}: damaged ({e})") from None
    if bad is not None:
        raise CheckpointError(f"{f}: damaged (member {bad} fails its CRC)")


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
    from neuronmoe.utils.manifest import check_manifest_shape

    man = check_manifest_shape(read_json(path), path)
    recorded = man.get("tokenizer_fingerprint")
    if not recorded:
        log.warning("%s: no tokenizer_fingerprint recorded, so the tokenizer cannot be checked", path)
        return man
    if recorded != tokenizer_fp:
        m = f" --model {model}" if model else ""
        raise TokenizerMismatchError(
            f"{path}: data prepared with another tokenizer (fingerprint {recorded}, the model{m} has {tokenizer_fp}); "
            f"rerun `neuronmoe prepare-data`{m}, or pass the --model the data was prepared for"
        )
    return man
