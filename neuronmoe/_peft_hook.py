"""Lazy registration of the ``NEURONMOE`` PEFT method.

``import neuronmoe`` has to stay cheap (``neuronmoe --help`` must not import torch,
transformers or peft), yet in every process that imports ``neuronmoe`` and then loads an
adapter through PEFT (``PeftModel.from_pretrained``, a Trainer resume, lm-eval's ``peft=``)
the method has to be known to PEFT. So registration is tied to PEFT itself:

* ``peft`` already imported when ``neuronmoe`` is: register now;
* otherwise: a finder on ``sys.meta_path`` waits for the first ``import peft`` and registers
  right after PEFT's own ``__init__`` has run (peft's loader is wrapped, then restored on the
  module, and the finder removes itself);
* importing :mod:`neuronmoe.moe` (``MoEConfig``, ``get_peft_model``) always registers too.

Nothing here imports torch, transformers or peft at import time.
"""
from __future__ import annotations

import sys
import warnings
from typing import Any

_finder: "_RegisterAfterPeft | None" = None


def register_peft() -> None:
    """Register ``MoEConfig``/``MoEModel`` with PEFT now (imports peft); idempotent."""
    from neuronmoe.moe import register  # importing neuronmoe.moe registers; register() is a no-op then

    register()


def _register_quietly() -> None:
    if "neuronmoe.moe" in sys.modules:
        return  # imported or being imported: neuronmoe.moe registers at the end of its own import
    try:
        register_peft()
    except Exception as e:  # never break `import peft` for users of other PEFT methods
        warnings.warn(
            f"neuronmoe could not register its NEURONMOE PEFT method ({type(e).__name__}: {e}); "
            f"NeuronMoE adapters will not load in this process until `import neuronmoe.moe` succeeds",
            RuntimeWarning,
            stacklevel=2,
        )


class _ThenRegister:  # an importlib Loader (the abc itself is not imported: it costs ~30 ms at start-up)
    """peft's own loader, followed by registration once peft's ``__init__`` has run."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        # leave no trace of the wrapper on the module
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        uninstall()
        _register_quietly()

    def __getattr__(self, name: str) -> Any:  # resources, get_filename, ... of the real loader
        return getattr(self._loader, name)


class _RegisterAfterPeft:  # an importlib MetaPathFinder
    """Finds nothing itself: hands out peft's spec with a loader that registers after executing peft.

    Stays installed until peft is really imported: ``importlib.util.find_spec("peft")`` (how
    transformers and accelerate test whether peft is installed) also asks this finder.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "peft":
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenRegister(spec.loader)
        return spec


def install() -> None:
    """Make sure the method gets registered in this process, without importing peft now."""
    global _finder
    peft = sys.modules.get("peft")
    if peft is not None:
        if not getattr(getattr(peft, "__spec__", None), "_initializing", False):
            _register_quietly()
        return  # a peft mid-import (neuronmoe imported from inside it) is left to neuronmoe.moe
    if _finder is None:  # called from neuronmoe.__init__, under the import system's lock on that module
        _finder = _RegisterAfterPeft()
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    global _finder
    if _finder is not None:
        try:
            sys.meta_path.remove(_finder)
        except ValueError:
            pass
        _finder = None


def pending() -> bool:
    """True while the finder waits for ``import peft``."""
    return _finder is not None
