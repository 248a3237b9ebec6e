"""Arguments shared by several stages, each with a help line and an environment default."""
from __future__ import annotations

import argparse

from neuronmoe.utils.device import DTYPE_CHOICES


def env(name: str, default: str | None = None, command: str | None = None) -> str | None:
    """The environment default of a flag: ``name`` (a variable of :mod:`neuronmoe.envvars`), or an old
    spelling of it that ``command`` honours (deprecated), else ``default``."""
    from neuronmoe.envvars import get

    return get(name, default, command)


def source_lang_default() -> str | None:
    """``SOURCE_LANG``, else the first of ``OLD_LANGS`` (None: the stage's YAML default)."""
    old = split_langs(env("OLD_LANGS"))
    return env("SOURCE_LANG") or (old[0] if old else None)


def add_model_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    from neuronmoe.models.aliases import ALIASES, DEFAULT_MODEL

    p.add_argument(
        "--model",
        default=None if required else env("BASE_MODEL_PATH", DEFAULT_MODEL),
        required=required,
        help=f"base model: a built-in alias ({', '.join(ALIASES)}), a local HF model folder, or a hub id "
        f"(env BASE_MODEL_PATH; default {DEFAULT_MODEL})",
    )


def add_output_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output-dir",
        default=env("OUTPUT_DIR", "outputs"),
        help="root folder of all stage outputs (env OUTPUT_DIR; default ./outputs)",
    )


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=env("DEVICE", "auto"),
        help="torch device: auto (this rank's GPU, else CPU), cpu, cuda, cuda:1 ... (env DEVICE)")
    p.add_argument("--dtype", default=env("DTYPE", "auto"), choices=DTYPE_CHOICES,
        help="compute dtype: auto = bf16 on a GPU, fp32 on CPU (env DTYPE)")


def split_langs(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        items = value
    else:
        items = value.replace(",", " ").split()
    out: list[str] = []
    for x in items:
        x = x.strip()
        if x and x not in out:
            out.append(x)
    return out
