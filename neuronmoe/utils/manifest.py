"""The small JSON manifest that joins stages.

Every stage writes ``manifest.json`` in its output folder, last, after all of its files:
its presence (with matching input fingerprints) is what tells a rerun that the stage is
complete. Fields: ``stage``, ``created``, ``inputs`` (paths and their fingerprints),
``config`` (the resolved options), ``versions`` (python and key packages), ``counts``,
``files`` (relative path -> sha256 and size).
"""
from __future__ import annotations

import datetime as _dt
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronmoe.errors import MissingInputError
from neuronmoe.utils.io import atomic_write_json, read_json, sha256_file

MANIFEST_NAME = "manifest.json"
_KEY_PACKAGES = ("neuronmoe", "torch", "transformers", "peft", "accelerate", "datasets", "lm-eval", "numpy")


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    from importlib import metadata  # ~50 ms: imported when a manifest is written, not at CLI start

    out = {"python": platform.python_version()}
    for name in _KEY_PACKAGES + tuple(extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class Manifest:
    stage: str
    config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    settings: Any = None  #: the stage's resolved :class:`neuronmoe.settings.Settings`: dumped with its sources

    def to_dict(self) -> dict[str, Any]:
        d = {
            "stage": self.stage,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "inputs": self.inputs,
            "config": self.config,
            "versions": package_versions(),
            "counts": self.counts,
            "files": self.files,
        }
        if self.settings is not None:
            d["settings"] = self.settings.to_dict()
            d["settings_sources"] = self.settings.provenance()
        d.update(self.extra)
        return d


def describe_files(root: str | Path, paths: list[str | Path]) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256": ..., "bytes": ...}}`` for files under ``root``."""
    root = Path(root)
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(Path(x) for x in paths):
        # a relative path is taken relative to ``root`` when it names a file there, else to the cwd
        full = root / p if not p.is_absolute() and (root / p).exists() else p
        rel = full.resolve().relative_to(root.resolve()).as_posix()
        out[rel] = {"sha256": sha256_file(full), "bytes": full.stat().st_size}
    return out


def write_manifest(out_dir: str | Path, manifest: Manifest, name: str = MANIFEST_NAME) -> Path:
    return atomic_write_json(Path(out_dir) / name, manifest.to_dict())


def load_manifest(out_dir: str | Path, name: str = MANIFEST_NAME) -> dict[str, Any]:
    """The manifest of a stage folder, shape-checked (:func:`check_manifest_shape`); missing: an error."""
    path = Path(out_dir) / name
    if not path.exists():
        raise MissingInputError(
            f"{path}: no manifest; the stage that writes {Path(out_dir).name}/ has not completed"
        )
    return check_manifest_shape(read_json(path), path)


def read_stage_manifest(out_dir: str | Path, name: str = MANIFEST_NAME) -> dict[str, Any] | None:
    """:func:`load_manifest`, or None when the folder has none (inputs not written by a stage of ours)."""
    path = Path(out_dir) / name
    return check_manifest_shape(read_json(path), path) if path.is_file() else None


def check_manifest_shape(man: Any, path: str | Path) -> dict[str, Any]:
    """``man`` if it is a manifest: a JSON object whose ``files`` (when present) maps each relative path to an
    object with its ``sha256`` (a string). Anything else (``[]``, ``files`` as a list) is an :class:`InputError`:
    a manifest that cannot be read cannot vouch for the files, so it is never passed over with a warning."""
    from neuronmoe.errors import InputError

    if not isinstance(man, dict):
        raise InputError(f"{path}: not a manifest (a JSON object expected, found {type(man).__name__}); rerun the "
                         f"stage that wrote it, or restore the file")
    files = man.get("files", {})
    bad = None
    if not isinstance(files, dict):
        bad = f"'files' is a {type(files).__name__}, not an object"
    else:
        bad = next((f"'files' entry {k!r} has no sha256" for k, v in files.items()
                    if not isinstance(v, dict) or not isinstance(v.get("sha256"), str)), None)
    if bad:
        raise InputError(f"{path}: malformed manifest ({bad}; expected {{\"<file>\": {{\"sha256\": ..., \"bytes\": "
                         f"...}}}}); rerun the stage that wrote it, or restore the file")
    return man


def verify_files(out_dir: str | Path, manifest: dict[str, Any]) -> list[str]:
    """Return the relative paths whose sha256 no longer matches the manifest (or are missing)."""
    root = Path(out_dir)
    bad = []
    for rel, info in check_manifest_shape(manifest, root / MANIFEST_NAME).get("files", {}).items():
        p = root / rel
        if not p.exists() or sha256_file(p) != info.get("sha256"):
            bad.append(rel)
    return bad
