"""Settings of ``neuronmoe model``: fetch a built-in alias, print a model's facts, list the known models, or save a
random-weight copy."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from neuronmoe.errors import ConfigError
from neuronmoe.settings import DTYPE_CHOICES, Command, Settings, setting

ACTIONS = ("fetch", "info", "list", "random")


@dataclass(kw_only=True)
class ModelSettings(Settings):
    COMMAND = "model"

    action: str | None = setting(None, flag=None, yaml=False, choices=ACTIONS,
                                 help="fetch: convert an alias once into the cache; info: print dims and source; list: known "
                                      "aliases and shipped configs; random: save a random-weight model of NAME's config to "
                                      "--out (benchmarks, GPU checks)")
    name: str | None = setting(None, flag=None, yaml=False,
                               help="alias, local folder, shipped config or hub id (default: the default alias)")
    out: str | None = setting(None, metavar="DIR", help="random: output folder (must not exist)")
    tokenizer: str | None = setting(None, metavar="MODEL",
                                    help="random: model whose tokenizer to save alongside (default: the default alias)")
    dtype: str = setting("bfloat16", choices=DTYPE_CHOICES, help="random: weight dtype")
    seed: int = setting(0, help="random: initialisation seed")

    def check(self) -> None:
        if self.action is None:
            self.fail("action", f"give one of {', '.join(ACTIONS)}")
        if self.action == "random" and (not self.name or not self.out):
            raise ConfigError("model random: give NAME (e.g. llama-3.2-3b) and --out FOLDER")

    def origin(self, name: str) -> str:
        """The positionals are named as in the usage line (``ACTION``, ``NAME``)."""
        return name.upper() if self.provenance().get(name, name) == name and name in ("action", "name") \
            else super().origin(name)


def _positionals(p: argparse.ArgumentParser) -> None:
    meta = {f.name: m for f, m, _ in ModelSettings.fields()}
    p.add_argument("action", metavar="ACTION", help=meta["action"].help + f" (one of {', '.join(ACTIONS)})")
    p.add_argument("name", nargs="?", default=None, metavar="NAME", help=meta["name"].help)


COMMANDS = [Command("model", ModelSettings, "neuronmoe.models.actions:main",
                    help="fetch a built-in model alias into the cache / show a model's facts", extra=_positionals)]
