"""The model card (README.md) written into every trained adapter folder."""
from __future__ import annotations

from typing import Any

from neuronmoe.languages import get_language
from neuronmoe.moe._registry import load_line

_HP = ("learning_rate", "adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay", "lr_scheduler_type",
       "warmup_steps", "effective_batch_size", "per_device_train_batch_size", "gradient_accumulation_steps", "max_steps",
       "num_train_epochs", "max_grad_norm", "bf16", "seed", "cutoff_len", "top_k", "aux_loss_coef",
       "aux_loss_form", "lpr_loss_coef", "lpr_input", "max_samples", "replay_max_samples")


def _langs(codes: list[str]) -> str:
    return ", ".join(f"{get_language(c).name} ({c})" for c in codes) or "none"


def model_card(cfg: dict[str, Any], report: dict[str, Any], data_meta: dict[str, Any], alloc: dict[str, Any]) -> str:
    """The adapter's README.md: what it is, languages, allocation, data, training, held-out perplexity, how to use it."""
    lines = [*_header(cfg, report), *_allocation_and_data(cfg, report, data_meta, alloc), *_training(cfg, report),
             *_usage(report)]
    return "\n".join(lines)


def _header(cfg: dict[str, Any], report: dict[str, Any]) -> list[str]:
    stage, epl = report["stage"], report["experts_per_layer"]
    moe_layers = [i for i, e in enumerate(epl) if e > 1]
    return [
        "---",
        "library_name: peft",
        f"base_model: {report['model']}",
        "tags: [neuronmoe, mixture-of-experts, multilingual, peft]",
        f"language: [{', '.join(list(cfg['languages']) + list(cfg['replay_languages']))}]",
        "---",
        "",
        f"# NeuronMoE adapter: {report['run']} (stage {stage})",
        "",
        f"A NeuronMoE adapter for **{report['model']}**: the dense MLP of {len(moe_layers)} of "
        f"{len(epl)} decoder layers is upcycled into a routed mixture of experts (expert 0 = the frozen "
        f"original MLP, top-{cfg['top_k']} routing). "
        + ("Stage 1 (expert initialisation): the base model is frozen; the new experts and the routers "
           "were trained on the new language(s) with the load-balancing loss."
           if stage == 1 else
           "Stage 2 (router training): only the routers were trained, on new-language text mixed with "
           "replay text of the old languages, with the language-prior routing (LPR) loss pushing "
           "old-language tokens to expert 0 and the load-balancing loss."),
        "",
        "## Languages",
        "",
        f"* new: {_langs(list(cfg['languages']))}",
        f"* replay (old): {_langs(list(cfg['replay_languages']))}",
        "",
    ]


def _allocation_and_data(cfg: dict[str, Any], report: dict[str, Any], data_meta: dict[str, Any],
                         alloc: dict[str, Any]) -> list[str]:
    epl, counts = report["experts_per_layer"], data_meta.get("counts", {})
    return [
        "## Allocation",
        "",
        f"* experts per layer: `{','.join(str(e) for e in epl)}` ({report['total_experts']} in all, "
        f"{report['new_experts']} new)",
        f"* source: {alloc.get('source') or alloc.get('mode') or alloc.get('allocation_source') or 'allocation.json'}",
        f"* base model fingerprint: `{report['base_model_fingerprint']}`",
        "",
        "## Data",
        "",
        f"* {counts.get('documents', '?')} documents, {counts.get('tokens', '?')} tokens "
        f"({', '.join(f'{k}: {v}' for k, v in (counts.get('tokens_per_lang') or {}).items())}), "
        f"packed into {counts.get('blocks', '?')} blocks of {cfg['cutoff_len']} tokens",
        "* sources: " + "; ".join(f"{s['lang']} <- {s['spec']} ({s['documents']} docs, flag {s['flag']})"
                                   for s in data_meta.get("sources", [])),
        "",
    ]


def _training(cfg: dict[str, Any], report: dict[str, Any]) -> list[str]:
    lines = [
        "## Training",
        "",
        f"* steps: {report['global_step']}, world size {report['world_size']}, "
        f"{report['train_seconds']:.1f} s, final mean loss {report['train_loss']:.4f}",
        f"* trainable parameters: {report['trainable_parameters']['trainable']:,} of "
        f"{report['trainable_parameters']['total']:,}",
        "",
        "| hyper-parameter | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {cfg.get(k)} |" for k in _HP]
    ppl = report.get("perplexity") or {}
    if ppl:
        lines += ["", "## Held-out perplexity", "", "| language | adapter | dense base |", "| --- | --- | --- |"]
        for lang, r in ppl.items():
            dense = r.get("dense_perplexity")
            lines.append(f"| {lang} | {r['perplexity']:.3f} | {'' if dense is None else f'{dense:.3f}'} |")
    return lines


def _usage(report: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Use",
        "",
        "The one line that loads this adapter (the same line is in adapter_config.json, field `how_to_load`):",
        "",
        "```python",
        load_line(report.get("model_path") or report["model"]),
        "```",
        "",
        "`import neuronmoe` registers the NEURONMOE PEFT method: without it PEFT (and `lm_eval --model hf "
        "--model_args peft=...`) stops with `KeyError: 'NEURONMOE'`. With the project's model resolution:",
        "",
        "```python",
        "import neuronmoe  # registers the NEURONMOE PEFT method",
        "from neuronmoe.models import load_model, load_tokenizer",
        "from peft import PeftModel",
        "",
        f"base = load_model({report['model']!r})",
        "model = PeftModel.from_pretrained(base, 'path/to/this/adapter')",
        f"tok = load_tokenizer({report['model']!r})",
        "```",
        "",
        "Evaluate with the project's harness wrapper, or with lm-eval's own command line (every flag of "
        "`lm_eval`, the method registered first), or export a standalone model folder for any Hugging Face loader:",
        "",
        "```bash",
        f"neuronmoe evaluate --model {report['model']} --adapter path/to/this/adapter",
        f"neuronmoe lm-eval --model hf --model_args pretrained={report.get('model_path') or report['model']},"
        "peft=path/to/this/adapter --tasks TASKS",
        "neuronmoe export --adapter path/to/this/adapter --out path/to/model  # then trust_remote_code=True",
        "```",
        "",
    ]
