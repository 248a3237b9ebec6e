"""Paper defaults live in YAML files under ``neuronmoe/configs/``; the CLI overrides them.

Precedence (lowest to highest): the stage's YAML, a user ``--config FILE``, environment
variables the stage documents, explicit command-line flags.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from neuronmoe.errors import ConfigError, MissingInputError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def config_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    q = CONFIG_DIR / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not q.exists():
        avail = sorted(x.stem for x in CONFIG_DIR.glob("**/*.yaml"))
        raise MissingInputError(f"config {name!r}: no file {q} (shipped configs: {', '.join(avail)})")
    return q


def load_yaml(name_or_path: str | Path) -> dict[str, Any]:
    path = config_path(str(name_or_path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def merge(base: Mapping[str, Any], *overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Recursive merge; ``None`` values in overrides mean "not given" and are skipped."""
    out: dict[str, Any] = dict(base)
    for ov in overrides:
        if not ov:
            continue
        for k, v in ov.items():
            if v is None:
                continue
            if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
                out[k] = merge(out[k], v)
            else:
                out[k] = v
    return out


def check_keys(cfg: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def layered(name: str, user_file: str | None, *overrides: Mapping[str, Any] | None,
            allowed: set[str] | None = None) -> dict[str, Any]:
    """A stage's options: its YAML < ``--config FILE`` (only fields the YAML has, or ``allowed``) < the
    overrides (environment and flags; ``None`` = not given)."""
    base = load_yaml(name)
    user = load_yaml(user_file) if user_file else None
    if user:
        check_keys(user, allowed if allowed is not None else set(base), str(user_file))
    return merge(base, user, *overrides)
