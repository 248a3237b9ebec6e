"""Unit identity: (layer, module, index), laid out layer-major then module then index."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuronmoe.errors import ConfigError

#: the MLP activation output act_fn(gate) (LAPE's units); not a projection
ACT_MODULE = "act_fn"


@dataclass(frozen=True)
class UnitLayout:
    """Which modules of which layers carry units, and how wide each is.

    The global unit order (rows of ``ap.npy``, ``units.npz``) is: layer 0 .. L-1, inside a
    layer the modules in ``modules`` order, inside a module the output index 0 .. size-1.
    """

    num_layers: int
    modules: tuple[str, ...]
    sizes: tuple[int, ...]

    @classmethod
    def for_model(cls, model_or_config: Any, modules: list[str] | tuple[str, ...] | None = None, metric: str = "ap") -> "UnitLayout":
        from neuronmoe.models.arch import get_arch, model_dims, unit_counts

        dims = model_dims(model_or_config)
        if metric == "lape":
            return cls(dims["num_layers"], (ACT_MODULE,), (dims["intermediate_size"],))
        spec = get_arch(model_or_config)
        counts = unit_counts(model_or_config)
        mods = tuple(modules) if modules else spec.modules
        unknown = [m for m in mods if m not in counts]
        if unknown:
            raise ConfigError(f"--modules: unknown module(s) {', '.join(unknown)}; choose from {', '.join(spec.modules)}")
        mods = tuple(m for m in spec.modules if m in mods)  # canonical order
        return cls(dims["num_layers"], mods, tuple(counts[m] for m in mods))

    @property
    def layer_width(self) -> int:
        return int(sum(self.sizes))

    @property
    def total(self) -> int:
        return self.layer_width * self.num_layers

    def module_offsets(self) -> list[int]:
        return [int(x) for x in np.concatenate([[0], np.cumsum(self.sizes)[:-1]])]

    def arrays(self) -> dict[str, np.ndarray]:
        """``layer``, ``module_id``, ``index`` int arrays of length ``total``."""
        mod_id = np.concatenate([np.full(s, i, dtype=np.int16) for i, s in enumerate(self.sizes)])
        index = np.concatenate([np.arange(s, dtype=np.int32) for s in self.sizes])
        return {
            "layer": np.repeat(np.arange(self.num_layers, dtype=np.int16), self.layer_width),
            "module_id": np.tile(mod_id, self.num_layers),
            "index": np.tile(index, self.num_layers),
        }

    def locate(self, column: int) -> tuple[int, str, int]:
        """(layer, module, index) of a global unit number."""
        layer, rest = divmod(int(column), self.layer_width)
        for name, off, size in zip(self.modules, self.module_offsets(), self.sizes):
            if rest < off + size:
                return layer, name, rest - off
        raise IndexError(column)  # pragma: no cover

    def save(self, path: str | Path) -> Path:
        """``units.npz``: layer[U], module_id[U], index[U], module_names (no pickles)."""
        import io

        from neuronmoe.utils.io import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, module_names=np.array(self.modules, dtype="U32"), **self.arrays())
        return atomic_write_bytes(path, buf.getvalue())


def load_units(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
