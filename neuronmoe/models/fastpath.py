"""The output projection reads a contiguous input.

``logits_to_keep`` (the evaluation's scored positions, the expert analysis's ``1``) slices the decoder's last
hidden states as ``hidden[:, -k:, :]``: a view whose rows are ``T x hidden`` apart. On CPU, torch 2.13 multiplies
such a view by a *frozen* bf16 weight (``requires_grad=False``: every base weight once a PEFT adapter is loaded)
30-70 times slower than a contiguous copy of it (SmolLM2's ``[49152, 576]`` head on ``[8, 1, 576]``: ~490 ms against
~7 ms; fp32: ~2x; a weight that requires grad, as in a plain dense model, is not affected). That cost alone was ~90 s
of the miniature run's 230 s expert analysis and part of every adapter evaluation (``benchmarks/bench_head.py``).

:func:`contiguous_output_head` adds a forward pre-hook to the output embeddings that copies a non-contiguous input
(``[B, k, hidden]``, small) before the projection. The result is the same product: bit for bit in bf16 (tests,
and the miniature run's expert analysis and evaluations), within fp32 rounding (~1e-6) where the slow path used
another kernel.
Every model a stage runs gets it: :func:`~neuronmoe.models.load_model`, :func:`~neuronmoe.models.adapter.load_adapter`
and the training run's base.
"""
from __future__ import annotations

from typing import Any

_MARK = "_neuronmoe_contiguous_input"


def _contiguous(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    x = args[0] if args else None
    if x is not None and hasattr(x, "is_contiguous") and not x.is_contiguous():
        return (x.contiguous(), *args[1:])
    return None


def contiguous_output_head(model: Any) -> Any:
    """Install the pre-hook on ``model``'s output embeddings once (a model without them is returned as it is)."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None or getattr(head, _MARK, False):
        return model
    head.register_forward_pre_hook(_contiguous)
    object.__setattr__(head, _MARK, True)
    return model
