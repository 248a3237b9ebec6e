"""The HF Trainer subclass: MoE losses, lang_flags, metrics.jsonl, tokens/s, expert load."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from neuronmoe.errors import StateError
from neuronmoe.utils.io import atomic_write_text, iter_jsonl


class NonFiniteTrainingError(StateError):
    """The loss or the gradient norm became NaN or infinite: training stops before the optimizer applies it."""


class CheckpointSaveError(StateError):
    """A checkpoint could not be written (a full disk): the run stops; ``--resume`` skips the incomplete one."""


def _is_write_failure(e: RuntimeError) -> bool:
    """``torch.save`` reports a failed write (a full disk) as a RuntimeError of its zip writer."""
    text = str(e)
    return any(s in text for s in ("PytorchStreamWriter", "No space left", "file write failed", "unexpected pos"))


def _diverged(what: str, value: float, step: int) -> NonFiniteTrainingError:
    return NonFiniteTrainingError(
        f"training stopped at step {step}: the {what} is {value} (not finite); nothing of this step was applied "
        f"and no checkpoint was written for it. Lower --learning-rate, check the data, or set max_grad_norm; "
        f"then rerun (--resume continues from the last checkpoint, --overwrite starts again)")


def _router_stats(model: Any) -> dict[Any, dict[str, Any]]:
    try:
        from neuronmoe.moe import router_stats
    except ImportError:  # pragma: no cover - adapter package absent
        return {}
    try:
        return router_stats(model) or {}
    except Exception:  # noqa: BLE001 - statistics must never stop training
        return {}


class MoETrainer(Trainer):
    """``compute_loss`` = ``out.loss`` (LM) + ``out.moe_loss`` (aux_coef*aux + lpr_coef*lpr).

    ``lang_flags`` is taken out of the batch and passed to the model by name. Per logging window
    it averages lm/aux/lpr losses and expert loads over micro-batches (and ranks), measures
    tokens/s (non-padding tokens, all ranks) and appends one line to ``metrics_path``.
    """

    def __init__(self, *args: Any, metrics_path: str | os.PathLike | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # the loss below is a per-micro-batch mean: let the Trainer divide by GA steps, and do not
        # pass num_items_in_batch to the model
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self.metrics_path = Path(metrics_path) if metrics_path else None
        self.add_callback(FollowUmask())
        self._reset_window()

    def _reset_window(self) -> None:
        self._acc = torch.zeros(6, dtype=torch.float64)  # lm, aux, lpr, n_microbatches, tokens, old tokens
        self._has = {"aux": False, "lpr": False}
        self._load: dict[str, list[float]] = {}
        self._load_n = 0
        self._t0 = time.perf_counter()

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """The Trainer's step; a non-finite loss stops training (the Trainer would silently skip it in the
        logged average and apply its NaN gradients)."""
        loss = super().training_step(model, inputs, *args, **kwargs)
        value = float(loss.detach().float().sum())
        if not math.isfinite(value):
            raise _diverged("loss", value, self.state.global_step + 1)
        return loss

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        """The pre-clip gradient norm (the Trainer computes it before each optimizer step); not finite: stop."""
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        if grad_norm is not None:
            value = float(grad_norm.item() if hasattr(grad_norm, "item") else grad_norm)
            if not math.isfinite(value):
                raise _diverged("gradient norm", value, self.state.global_step + 1)
        return grad_norm

    def _save_checkpoint(self, model: Any, trial: Any, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's checkpoint; a failure to write it (a full disk) is one error naming the checkpoint,
        which ``--resume`` then passes over (it continues from the last complete one)."""
        try:
            return super()._save_checkpoint(model, trial, *args, **kwargs)
        except (OSError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and not _is_write_failure(e):
                raise
            ckpt = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            what = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else " ".join(str(e).split())
            raise CheckpointSaveError(
                f"{ckpt}: could not be written ({what}); it is incomplete. Free some space, then rerun with --resume: "
                f"it skips this checkpoint and continues from the last complete one") from None

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        flags = inputs.pop("lang_flags", None)
        if flags is not None:
            inputs["lang_flags"] = flags
        outputs = model(**inputs)
        lm = outputs.loss
        moe = getattr(outputs, "moe_loss", None)
        loss = lm if moe is None else lm + moe.to(lm.dtype)
        if model.training:
            self._accumulate(model, inputs, outputs, lm)
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _accumulate(self, model: Any, inputs: dict[str, Any], outputs: Any, lm: torch.Tensor) -> None:
        self._acc[0] += float(lm.detach())
        for i, name in ((1, "aux"), (2, "lpr")):
            v = getattr(outputs, f"{name}_loss", None)
            if v is not None:
                self._acc[i] += float(v.detach())
                self._has[name] = True
        self._acc[3] += 1
        mask = inputs.get("attention_mask")
        self._acc[4] += float(mask.sum()) if mask is not None else float(inputs["input_ids"].numel())
        flags = inputs.get("lang_flags")
        if flags is not None:
            self._acc[5] += float((flags == 1).sum())
        stats = _router_stats(self.accelerator.unwrap_model(model))
        if stats:
            for layer, s in stats.items():
                load = s.get("load") if isinstance(s, dict) else None
                if load is None:
                    continue
                load = [float(x) for x in (load.tolist() if hasattr(load, "tolist") else load)]
                tot = sum(load) or 1.0
                frac = [x / tot for x in load]
                key = str(layer)
                prev = self._load.get(key)
                self._load[key] = frac if prev is None else [a + b for a, b in zip(prev, frac)]
            self._load_n += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        extra: dict[str, Any] = {}
        expert_load: dict[str, list[float]] | None = None
        if "loss" in logs:
            acc = self._acc.clone().to(self.args.device)
            if self.accelerator.num_processes > 1:
                acc = self.accelerator.reduce(acc, reduction="sum")
            acc = acc.cpu()
            n = max(float(acc[3]), 1.0)
            dt = max(time.perf_counter() - self._t0, 1e-9)
            if acc[3] > 0:
                extra["lm_loss"] = round(float(acc[0]) / n, 6)
                if self._has["aux"]:
                    extra["aux_loss"] = round(float(acc[1]) / n, 6)
                if self._has["lpr"] and acc[5] > 0:  # no old-language token: no LPR loss to report
                    extra["lpr_loss"] = round(float(acc[2]) / n, 6)
                extra["tokens_per_s"] = round(float(acc[4]) / dt, 2)
            if self._load_n:
                expert_load = {k: [round(x / self._load_n, 5) for x in v] for k, v in self._load.items()}
            self._reset_window()
        logs.update(extra)
        super().log(logs, start_time)
        if "loss" in logs and self.metrics_path is not None and self.is_world_process_zero():
            rec: dict[str, Any] = {"step": self.state.global_step, "epoch": logs.get("epoch")}
            for k in ("loss", "lm_loss", "aux_loss", "lpr_loss", "learning_rate", "grad_norm", "tokens_per_s"):
                if k in logs and logs[k] is not None:
                    rec[k] = float(logs[k])
            if expert_load:
                rec["expert_load"] = expert_load
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")


def truncate_metrics(path: str | os.PathLike, max_step: int) -> int:
    """Drop metric lines past ``max_step`` (a resumed run logs those steps again); returns kept."""
    path = Path(path)
    if not path.exists():
        return 0
    kept = [json.dumps(rec) for _, rec in iter_jsonl(path, skip_invalid=True)  # a line cut by a kill is dropped
            if int(rec.get("step", 0)) <= max_step]
    atomic_write_text(path, "".join(x + "\n" for x in kept))
    return len(kept)


class FollowUmask(TrainerCallback):
    """Checkpoints follow the umask like every other file (``save_pretrained`` writes its safetensors 0600)."""

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        from neuronmoe.utils.io import follow_umask_tree

        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and state.is_world_process_zero:
            follow_umask_tree(ckpt)


class SkipLastCheckpoint(TrainerCallback):
    """No checkpoint at the last step (``save_last: false``): :func:`~neuronmoe.training.run.finalise` writes the
    adapter and the manifest that mark the run finished, so a checkpoint of the same weights with the optimizer
    state beside them is only disk and time (runs after the Trainer's flow callback, which asked for the save)."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            control.should_save = False


class StopAtStep(TrainerCallback):
    """Raise ``KeyboardInterrupt`` after the checkpoint of ``step`` is saved (tests: a "kill")."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step >= self.step:
            raise KeyboardInterrupt(f"stopped at step {state.global_step} (test)")
