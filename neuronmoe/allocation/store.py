"""Allocation files: build the record, write ``<name>.json`` + ``<name>.env``, load and validate.

``load_allocation(path_or_name, config=None)`` is what the MoE adapter, the trainer and the
pipeline use. A name is looked up as a file path, then ``$OUTPUT_DIR/allocation/<name>.json``,
then among the paper's published allocations shipped in ``neuronmoe/configs/allocations/``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from neuronmoe.allocation.core import MAX_EXPERTS_PER_LAYER
from neuronmoe.config import CONFIG_DIR
from neuronmoe.errors import InputError, MissingInputError

REFERENCE_DIR = CONFIG_DIR / "allocations"
ENV_KEY = "ADA_MOE_NUM_EXPERTS_LIST"


def shipped_allocations() -> list[str]:
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))


@dataclass
class Allocation:
    """A loaded, validated allocation; ``data`` is the whole JSON record."""

    experts_per_layer: list[int]
    name: str
    path: Path | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return len(self.experts_per_layer)

    @property
    def total_experts(self) -> int:
        return int(sum(self.experts_per_layer))

    @property
    def new_experts(self) -> int:
        return self.total_experts - self.num_layers

    @property
    def scores(self) -> list[float] | None:
        return self.data.get("scores")

    @property
    def label(self) -> str:
        return str(self.data.get("label") or self.name)

    def validate_for(self, config: Any, where: str | None = None) -> None:
        """The layer count (and, when recorded, the base-model fingerprint) must match ``config``."""
        from neuronmoe.utils.checks import check_fits_base

        check_fits_base(self.experts_per_layer, self.data.get("base_model_fingerprint"), config,
                        f"allocation {where or self.path or self.name}")


def check_experts(experts: Any, where: str) -> list[int]:
    if not isinstance(experts, (list, tuple)) or not experts:
        raise InputError(f"{where}: experts_per_layer must be a non-empty list of integers")
    out = []
    for i, e in enumerate(experts):
        if isinstance(e, bool) or not isinstance(e, int) or not 1 <= e <= MAX_EXPERTS_PER_LAYER:
            raise InputError(f"{where}: experts_per_layer[{i}] = {e!r}; each entry must be an integer in "
                             f"[1, {MAX_EXPERTS_PER_LAYER}]")
        out.append(int(e))
    return out


def parse_env_line(text: str, where: str) -> list[int]:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        if line.startswith(f"{ENV_KEY}="):
            val = line.split("=", 1)[1].strip().strip("'\"")
            try:
                return check_experts([int(x) for x in val.split(",") if x.strip()], where)
            except ValueError as e:
                raise InputError(f"{where}: {ENV_KEY} is not a list of integers ({e})") from None
    raise InputError(f"{where}: no {ENV_KEY}= line")


def resolve_allocation_path(path_or_name: str | os.PathLike, output_dir: str | os.PathLike | None = None,
                            flag: str = "allocation") -> Path:
    s = str(path_or_name)
    p = Path(os.path.expanduser(s))
    if p.is_file():
        return p
    from neuronmoe.layout import Layout

    cands = []
    is_name = "/" not in s and not s.endswith((".json", ".env")) and s not in (".", "..") and bool(s.strip())
    if is_name and output_dir is not None:
        cands.append(Layout(output_dir).allocations / f"{s}.json")
    if is_name:
        cands.append(REFERENCE_DIR / f"{s}.json")
    for c in cands:
        if c.is_file():
            return c
    where = f", no {Layout(output_dir).allocations / (s + '.json')}" if output_dir is not None else ""
    raise MissingInputError(
        f"{flag} {s!r}: no such file{where}, and not a shipped allocation ({', '.join(shipped_allocations())})"
    )


def load_allocation(path_or_name: str | os.PathLike, config: Any = None, *,
                    output_dir: str | os.PathLike | None = None, flag: str = "allocation") -> Allocation:
    """Load an allocation JSON (or a ``.env`` with ``ADA_MOE_NUM_EXPERTS_LIST=``) and validate it.

    With ``config`` (a transformers config), the layer count and recorded base-model
    fingerprint must match.
    """
    from neuronmoe.utils.io import read_json

    path = resolve_allocation_path(path_or_name, output_dir, flag)
    where = str(path)
    if path.suffix == ".env":
        experts = parse_env_line(path.read_text(encoding="utf-8"), where)
        data: dict[str, Any] = {"experts_per_layer": experts}
    else:
        data = read_json(path)
        if not isinstance(data, dict) or "experts_per_layer" not in data:
            raise InputError(f"{where}: not an allocation (no experts_per_layer field)")
        experts = check_experts(data["experts_per_layer"], where)
        for key, want in (("total_experts", sum(experts)), ("num_layers", len(experts))):
            if data.get(key) is not None and int(data[key]) != want:
                raise InputError(f"{where}: {key} is {data[key]} but experts_per_layer gives {want}")
    alloc = Allocation(experts_per_layer=experts, name=data.get("name") or path.stem, path=path, data=data)
    if config is not None:
        alloc.validate_for(config, where)
    return alloc


@dataclass
class RecordFields:
    """What an allocation record says besides its experts (docs/CONTRACTS.md, docs/allocation.md)."""

    name: str
    mode: str
    source: str | None
    targets: Sequence[str]
    e_min: int | None
    e_max: int | None
    rounding: str | None
    scores: Sequence[float] | None
    model: str | None = None
    extra: dict[str, Any] | None = None


def build_record(experts: Sequence[int], *, config: Any = None, reference: Allocation | None = None,
                 **fields: Any) -> dict[str, Any]:
    """The allocation JSON record; ``fields`` are those of :class:`RecordFields`; parameter counts when
    ``config`` (a transformers config) is given, their change against ``reference`` when both are."""
    return make_record(experts, RecordFields(**fields), config, reference)


def make_record(experts: Sequence[int], f: RecordFields, config: Any = None,
                reference: Allocation | None = None) -> dict[str, Any]:
    """See :func:`build_record`."""
    experts = check_experts(list(experts), f.name)
    rec: dict[str, Any] = {
        "name": f.name, "experts_per_layer": experts, "total_experts": sum(experts),
        "new_experts": sum(experts) - len(experts), "num_layers": len(experts), "mode": f.mode, "source": f.source,
        "targets": list(f.targets), "e_min": f.e_min, "e_max": f.e_max, "rounding": f.rounding,
        "scores": [float(s) if not float(s).is_integer() else int(s) for s in f.scores] if f.scores is not None else None,
        "model": f.model, "base_model_fingerprint": None, "added_params": None, "params": None, "reference": None,
    }
    if config is not None:
        rec.update(_param_fields(experts, f.name, config, reference))
    elif reference is not None:
        if reference.num_layers != len(experts):
            raise InputError(f"reference {reference.name}: {reference.num_layers} layers, allocation {f.name}: {len(experts)}")
        rec["reference"] = _reference_fields(rec["total_experts"], reference)
    if f.extra:
        rec.update(f.extra)
    return rec


def _reference_fields(total: int, reference: Allocation) -> dict[str, Any]:
    from neuronmoe.allocation.params import relative_change

    return {"name": reference.name, "path": str(reference.path) if reference.path else None,
            "total_experts": reference.total_experts, "experts_change": relative_change(total, reference.total_experts)}


def _param_fields(experts: list[int], name: str, config: Any, reference: Allocation | None) -> dict[str, Any]:
    """base_model_fingerprint, params, added_params and (with a reference) the changes against it."""
    from neuronmoe.allocation.params import count_params, model_shape, relative_change
    from neuronmoe.utils.checks import check_fits_base
    from neuronmoe.utils.fingerprint import config_fingerprint

    check_fits_base(experts, None, config, f"allocation {name}")
    shape = model_shape(config)
    params = count_params(experts, shape)
    out: dict[str, Any] = {"base_model_fingerprint": config_fingerprint(config), "params": params,
                           "added_params": params["added_params"]}
    if reference is not None:
        reference.validate_for(config)
        rp = count_params(reference.experts_per_layer, shape)
        out["reference"] = {
            **_reference_fields(sum(experts), reference),
            "moe_ffn_params": rp["moe_ffn_params"],
            "moe_ffn_params_change": relative_change(params["moe_ffn_params"], rp["moe_ffn_params"]),
            "added_params": rp["added_params"],
            "added_params_change": relative_change(params["added_params"], rp["added_params"]),
            "total_params_change": relative_change(params["total_params"], rp["total_params"]),
        }
    return out


def env_text(experts: Sequence[int]) -> str:
    return f"{ENV_KEY}={','.join(str(int(e)) for e in experts)}\n"


def write_allocation(record: dict[str, Any], out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<out>`` (JSON) and the sibling ``.env`` atomically, under the JSON's lock (two runs writing one
    allocation never leave a JSON of one and a ``.env`` of the other); returns both paths."""
    from neuronmoe.utils.io import atomic_write_json, atomic_write_text
    from neuronmoe.utils.lock import output_lock

    out = Path(out)
    if out.suffix != ".json":
        out = out.with_name(out.name + ".json")
    env = out.with_suffix(".env")
    with output_lock(out, f"allocation {out}", file=True):
        atomic_write_text(env, env_text(record["experts_per_layer"]))
        atomic_write_json(out, record)
    return out, env
