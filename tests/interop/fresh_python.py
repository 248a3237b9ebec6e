"""Run by the interop tests in a fresh Python in which ``import neuronmoe`` fails.

``python fresh_python.py SPEC.json``: for every exported folder in the spec, load it with stock
transformers (``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)``), record
logits on the given ids, greedy ``generate()`` with the KV cache, the class of every decoder
layer's MLP and the weight dtypes; then score each folder with lm-eval the way the ``lm_eval`` CLI
does (``simple_evaluate(model="hf", model_args="pretrained=...,trust_remote_code=True")``, with a
task index of the given folder only, for speed); optionally try to load a NeuronMoE adapter
with plain PEFT. Writes everything to ``spec["out"]`` (torch.save).
"""
from __future__ import annotations

import importlib.abc
import json
import sys


class _BlockNeuronMoE(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "neuronmoe" or fullname.startswith("neuronmoe."):
            raise ImportError(f"{fullname}: neuronmoe is blocked in this process")
        return None


sys.meta_path.insert(0, _BlockNeuronMoE())


def main(spec_path: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    spec = json.loads(open(spec_path, encoding="utf-8").read())
    torch.set_num_threads(int(spec.get("threads", 1)))
    ids = torch.load(spec["ids"])
    out: dict = {"models": {}, "lm_eval": {}}
    for name, folder in spec["models"].items():
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=spec.get("new_tokens", 6),
                             do_sample=False, use_cache=True, pad_token_id=0)
        out["models"][name] = {
            "class": type(model).__name__,
            "mlps": [type(layer.mlp).__name__ for layer in model.model.layers],
            "dtypes": {n: str(p.dtype) for n, p in model.named_parameters()},
            "logits": logits.float(),
            "generated": gen,
        }
        del model
    if spec.get("tasks"):
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        tm = TaskManager(include_path=spec["include_path"], include_defaults=False)  # our local tasks only: no 10 s scan
        for name, folder in spec["models"].items():
            if name not in spec.get("lm_eval_models", spec["models"]):
                continue
            res = simple_evaluate(model="hf", model_args=f"pretrained={folder},trust_remote_code=True,dtype=float32",
                                  tasks=spec["tasks"], task_manager=tm, device="cpu", batch_size=8)
            out["lm_eval"][name] = res["results"]
    if spec.get("stock_peft"):  # what plain PEFT does with a NeuronMoE adapter (documented in docs/export.md)
        import peft

        base = AutoModelForCausalLM.from_pretrained(spec["stock_peft"]["base"])
        try:
            peft.PeftModel.from_pretrained(base, spec["stock_peft"]["adapter"])
            out["stock_peft_error"] = None
        except Exception as e:  # noqa: BLE001 - the exception is the observation
            out["stock_peft_error"] = f"{type(e).__name__}: {e}"
    out["neuronmoe_imported"] = sorted(m for m in sys.modules if m == "neuronmoe" or m.startswith("neuronmoe."))
    torch.save(out, spec["out"])


if __name__ == "__main__":
    main(sys.argv[1])
