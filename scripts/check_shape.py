"""The shape rule of the lint step (scripts/run_tests.sh): no function in neuronmoe/ over 60 lines or with more
than 8 parameters (self/cls not counted). Complexity is ruff's C901 (pyproject.toml).

    python scripts/check_shape.py            # exit 1 and one line per offender
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_LINES = 60
MAX_PARAMS = 8
ROOT = Path(__file__).resolve().parents[1]

#: offenders being split (the list only shrinks; empty when the restructure is complete)
KNOWN: set[str] = set()


def offenders(root: Path = ROOT / "neuronmoe") -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            a = node.args
            params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
            lines = node.end_lineno - node.lineno + 1
            where = f"{path.relative_to(ROOT).as_posix()}:{node.name}"
            if (lines > MAX_LINES or len(params) > MAX_PARAMS) and where not in KNOWN:
                out.append(f"{where} (line {node.lineno}): {lines} lines, {len(params)} parameters "
                           f"(at most {MAX_LINES} and {MAX_PARAMS}: split it, or group arguments in a settings object)")
    return out


def main() -> int:
    bad = offenders()
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
