"""``neuronmoe model``: fetch a built-in alias into the cache, or print a model's facts."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="fetch a built-in model alias into the cache / show a model's facts")
    p.add_argument("action", choices=["fetch", "info", "list"], help="fetch: convert an alias once into the cache; info: print dims and source; list: known aliases and shipped configs")
    p.add_argument("name", nargs="?", default=None, help="alias, local folder, shipped config or hub id (default: the default alias)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neuronmoe.models import ALIASES, describe, resolve_model, shipped_configs

    if args.action == "list":
        for name, a in ALIASES.items():
            print(f"{name:14s} alias   {a.description}")
        for name in shipped_configs():
            print(f"{name:14s} config  (config only, no weights)")
        return 0
    if args.action == "fetch":
        print(resolve_model(args.name))
        return 0
    print(json.dumps(describe(args.name), indent=2))
    return 0
