"""Where every evaluation number comes from: what a cell's result depends on, and checks that runs compared in one
table read the same data.

* :func:`model_fingerprint`: a local model folder (a built-in alias materialised in the cache, or any folder) by
  the sha256 of its files, not by its path: a copied folder is the same model, a folder whose weights changed is
  not. A hub id is its name (its revision is the hub's business).
* :func:`run_identity`: model, adapter files, dtype, device, seed, limit, max length, lm-eval version.
* :func:`cell_fingerprints`: per cell, ``identity`` (run identity + the cell's spec: enough to keep a finished
  result when the cell's data cannot be loaded again), ``inputs`` (+ resolved task configs without the dataset
  revision + local data files) and ``fingerprint`` (+ the commit the data were read at). A rerun reuses a cell
  whose fingerprint is unchanged, recomputes one whose only change is the dataset commit, and refuses other
  inputs unless ``--overwrite``.
* :func:`check_dataset_commits`: ``neuronmoe report`` refuses runs whose shared cells read different commits.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from neuronmoe.errors import InputError
from neuronmoe.utils.fingerprint import file_digest as _file_digest
from neuronmoe.utils.fingerprint import folder_digest


def sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def model_fingerprint(spec: str | None) -> dict[str, Any]:
    """What identifies ``--model`` in a cell's fingerprint: a local folder by its files' content (and dims), a hub
    id by its name."""
    from neuronmoe.models import describe

    info = describe(spec)
    path = Path(str(info.get("path")))
    if not path.is_dir():
        return info
    return {**{k: v for k, v in info.items() if k not in ("model", "path", "source")}, "files": folder_digest(path)}


def run_identity(s: Any) -> dict[str, Any]:
    """What makes every cell's numbers, apart from the cell itself: model, adapter files, dtype, seed, limit, lengths,
    lm-eval version (``s``: the resolved evaluate settings)."""
    import lm_eval

    ident: dict[str, Any] = {"model": model_fingerprint(s.model), "dtype": s.dtype, "device": s.device, "seed": s.seed,
                             "limit": s.limit, "max_length": s.max_length, "lm_eval": getattr(lm_eval, "__version__", "?")}
    if s.adapter:
        ident["adapter"] = {f.name: _file_digest(f) for f in sorted(Path(s.adapter).glob("adapter_*")) if f.is_file()}
    return ident


def local_data_digest(obj: Any) -> dict[str, str]:
    """sha256 of the local data files a built cell reads (the generated local suite): their content is its input.
    (A replica's content is its ``replica:<digest>`` revision.)"""
    from neuronmoe.evaluation.cells import leaves_of

    out: dict[str, str] = {}
    for t in leaves_of(obj):
        files = (t.config.dataset_kwargs or {}).get("data_files") or {}
        for f in files.values() if isinstance(files, dict) else [files]:
            for p in [f] if isinstance(f, str) else list(f):
                if os.path.isabs(str(p)) and Path(p).is_file():
                    out[str(p)] = _file_digest(Path(p))
    return out


def identity_fingerprint(ident: dict[str, Any], cell: Any) -> str:
    """Run identity + the cell's spec: what must hold to keep a finished result whose data cannot be reloaded."""
    return sha({"identity": ident, "spec": cell.spec.to_dict()})


def cell_fingerprints(ident: dict[str, Any], cell: Any, built: Any) -> dict[str, str]:
    """``{"identity", "inputs", "fingerprint"}`` of a built cell (module docstring)."""
    from neuronmoe.evaluation.cells import config_digest

    identity = identity_fingerprint(ident, cell)
    inputs = sha({"identity": identity, "config": config_digest(built, mask_revision=True), "data": local_data_digest(built)})
    return {"identity": identity, "inputs": inputs, "fingerprint": sha({"inputs": inputs, "dataset_revision": cell.data_revision()})}


def cell_revisions(run: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    """``{cell key: (hub dataset, the revision its result was computed at)}`` of a loaded run (results.json)."""
    out = {}
    for key, st in ((run.get("neuronmoe") or {}).get("cells") or {}).items():
        rec = st.get("dataset_revision") if isinstance(st, dict) else None
        if isinstance(rec, dict) and rec.get("dataset"):
            out[key] = (rec.get("dataset"), rec.get("revision"))
    return out


def check_dataset_commits(runs: list[dict[str, Any]]) -> list[str]:
    """Raise :class:`InputError` when two runs' shared cell read its dataset at different commits (naming them);
    return notes for shared cells whose commit is unknown in some run (offline, unpinned)."""
    from neuronmoe.evaluation.cells import is_commit

    by_cell: dict[str, dict[str, tuple[str | None, str | None]]] = {}
    for run in runs:
        label = str((run.get("neuronmoe") or {}).get("label"))
        for key, rec in cell_revisions(run).items():
            by_cell.setdefault(key, {})[label] = rec
    clashes, unknown = [], []
    for key, recs in by_cell.items():
        if len(recs) < 2:
            continue
        known = {label: rec for label, rec in recs.items() if is_commit(rec[1])}
        if len({rec[1] for rec in known.values()}) > 1:
            clashes.append(f"{key} ({', '.join(f'{lab}: {rec[0]}@{str(rec[1])[:12]}' for lab, rec in known.items())})")
        if len(known) < len(recs):
            unknown.append(key)
    if clashes:
        raise InputError("these runs read the same cells at different dataset commits, so their numbers are not "
                         f"comparable: {'; '.join(clashes)}. Rerun them at one commit (pin it in "
                         "neuronmoe/configs/eval_suites.yaml) or report them separately.")
    return [f"Dataset commit unknown in some runs (unpinned, evaluated offline) for {', '.join(sorted(unknown))}: "
            "their comparability cannot be checked."] if unknown else []
