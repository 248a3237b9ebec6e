"""``neuronmoe export``: base model + NeuronMoE adapter -> one ordinary Hugging Face model folder.

The folder holds ``config.json`` (the base config under a ``neuronmoe_<type>`` model_type, plus
``moe_experts_per_layer``, ``moe_top_k`` and an ``auto_map``), the merged weights as safetensors
(routers in float32, everything else in the chosen dtype), the base tokenizer and generation
config, ``modeling_neuronmoe.py`` (torch + transformers only) and a model card. Then
``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` loads it in any Python,
without neuronmoe, and computes what base + adapter computes.

Every check runs before anything is written; the folder is built under a temporary name and
renamed into place at the end (``neuronmoe.utils.io.atomic_dir``).
"""
from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuronmoe.errors import InputError, StateError

if TYPE_CHECKING:
    from neuronmoe.interop.settings import ExportSettings

log = logging.getLogger(__name__)

MODELING_FILE = Path(__file__).with_name("modeling_neuronmoe.py")
#: --dtype spellings -> torch dtype name; "auto" = the base checkpoint's dtype
EXPORT_DTYPES = {
    "auto": None, "float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16",
}
_ROUTER = re.compile(r"\.moe_router\.[^.]+\.weight$")
_NEW_EXPERT = re.compile(r"\.moe_experts\.[^.]+\.(\d+)\.")


class ExportError(InputError):
    """Bad export input (one line, names the flag or file)."""


@dataclass
class ExportPlan:
    """Everything checked before the model is loaded."""

    adapter: Path
    out: Path
    model: str  # as given (alias, folder or hub id)
    model_path: str  # resolved for from_pretrained
    adapter_config: dict[str, Any]
    base_config: Any
    dtype: str  # torch dtype name
    push_to_hub: str | None = None

    @property
    def base_model_type(self) -> str:
        return str(self.base_config.model_type)

    @property
    def experts_per_layer(self) -> list[int]:
        return [int(e) for e in self.adapter_config["experts_per_layer"]]

    @property
    def top_k(self) -> int:
        return int(self.adapter_config.get("top_k", 2))


def export_classes(model_type: str) -> tuple[Any, Any]:
    """(config class, CausalLM class) of the exported model for a base ``model_type``."""
    from neuronmoe.interop.modeling_neuronmoe import CLASSES

    try:
        return CLASSES[model_type]
    except KeyError:
        raise ExportError(
            f"base model_type {model_type!r} cannot be exported; exportable: {', '.join(sorted(CLASSES))} "
            f"(a multimodal Gemma-3 checkpoint: export its text model)"
        ) from None


def export_key(key: str) -> str:
    """A state-dict key of the adapted model -> the key in the exported model.

    ``...mlp.base_layer.X`` -> ``...mlp.experts.0.X``; ``...mlp.moe_experts.<adapter>.<i>.X`` ->
    ``...mlp.experts.<i+1>.X``; ``...mlp.moe_router.<adapter>.weight`` -> ``...mlp.router.weight``.
    """
    if _ROUTER.search(key):
        return _ROUTER.sub(".router.weight", key)
    m = _NEW_EXPERT.search(key)
    if m:
        return key[: m.start()] + f".experts.{int(m.group(1)) + 1}." + key[m.end():]
    return key.replace(".base_layer.", ".experts.0.", 1)


def _is_inside(a: Path, b: Path) -> bool:
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def plan_export(s: ExportSettings) -> ExportPlan:
    """Check every input (nothing is loaded or written): the errors a user can fix, one line each."""
    from neuronmoe.evaluation.runner import check_adapter
    from neuronmoe.models import load_config, resolve_model

    key = str(s.dtype).lower()
    if key not in EXPORT_DTYPES:
        raise ExportError(f"--dtype {s.dtype}: unsupported; choose from {', '.join(EXPORT_DTYPES)}")
    adapter = Path(str(s.adapter))
    acfg = _neuronmoe_adapter_config(adapter)
    model = s.model or acfg.get("base_model_name_or_path")
    if not model:
        raise ExportError(f"--adapter {adapter}: adapter_config.json names no base model; pass --model")
    model_path = resolve_model(model)
    base_cfg = load_config(model)
    check_adapter(acfg, base_cfg, str(adapter))  # adapter made for this base (fingerprint, layer count)
    export_classes(str(base_cfg.model_type))
    if getattr(base_cfg, "quantization_config", None):
        raise ExportError(f"--model {model}: a quantized checkpoint; export from the unquantized base model")
    out = Path(str(s.out))
    _check_out(out, adapter, Path(model_path), s.overwrite)
    if s.push_to_hub:
        _check_repo_id(s.push_to_hub)
    name = EXPORT_DTYPES[key] or _checkpoint_dtype(base_cfg)
    return ExportPlan(adapter=adapter, out=out, model=str(model), model_path=model_path, adapter_config=acfg,
                      base_config=base_cfg, dtype=name, push_to_hub=s.push_to_hub)


def _neuronmoe_adapter_config(adapter: Path) -> dict[str, Any]:
    """``adapter_config.json`` of a NeuronMoE adapter with at least one MoE layer."""
    from neuronmoe.evaluation.runner import read_adapter_config
    from neuronmoe.moe._registry import PEFT_TYPE

    acfg = read_adapter_config(adapter)
    if str(acfg.get("peft_type", "")).upper() != PEFT_TYPE:
        raise ExportError(f"--adapter {adapter}: peft_type is {acfg.get('peft_type')!r}, not a NeuronMoE adapter ({PEFT_TYPE})")
    epl = acfg.get("experts_per_layer")
    if not isinstance(epl, list) or not epl or max(int(e) for e in epl) < 2:
        raise ExportError(f"--adapter {adapter}: adapter_config.json has no MoE layer in experts_per_layer ({epl!r})")
    return acfg


def _check_out(out: Path, adapter: Path, model_path: Path, overwrite: bool) -> None:
    """``--out`` replaces neither input, and an existing folder only with ``--overwrite``."""
    for name, src in (("--adapter", adapter), ("--model", model_path)):
        if src.exists() and (_is_inside(src.resolve(), out.resolve()) or out.resolve() == src.resolve()):
            raise ExportError(f"--out {out}: would replace the {name} folder {src}; choose another folder")
    if out.exists() and not overwrite:
        raise StateError(f"--out {out} exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a folder")


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ExportError(f"--push-to-hub {repo_id}: not a valid repository id ({e})") from None


def _checkpoint_dtype(cfg: Any) -> str:
    dt = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None)
    name = str(dt).replace("torch.", "") if dt is not None else "float32"
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def export_config(plan: ExportPlan) -> Any:
    """The exported config: the base config's fields under our model_type, plus the MoE fields and auto_map."""
    cfg_cls, model_cls = export_classes(plan.base_model_type)
    d = plan.base_config.to_dict()
    for k in ("model_type", "architectures", "auto_map", "_name_or_path", "transformers_version"):
        d.pop(k, None)
    cfg = cfg_cls.from_dict(d)
    cfg.moe_experts_per_layer = plan.experts_per_layer
    cfg.moe_top_k = plan.top_k
    cfg.dtype = plan.dtype
    module = MODELING_FILE.stem
    cfg.auto_map = {"AutoConfig": f"{module}.{cfg_cls.__name__}", "AutoModelForCausalLM": f"{module}.{model_cls.__name__}"}
    cfg.architectures = [model_cls.__name__]
    return cfg


def merged_state_dict(peft_model: Any, dtype: Any) -> dict[str, Any]:
    """The adapted model's weights under the exported model's keys (routers float32, the rest ``dtype``)."""
    import torch

    out = {}
    for key, t in peft_model.get_base_model().state_dict().items():
        new = export_key(key)
        out[new] = t.to(torch.float32 if new.endswith(".router.weight") else dtype)
    return out


def build_exported_model(plan: ExportPlan, peft_model: Any) -> Any:
    """The exported class, built on the meta device and given the merged weights (no copy when dtypes agree)."""
    import torch

    cfg = export_config(plan)
    _, model_cls = export_classes(plan.base_model_type)
    dtype = getattr(torch, plan.dtype)
    sd = merged_state_dict(peft_model, dtype)
    with torch.device("meta"):
        model = model_cls(cfg)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:  # a mapping bug, not user input: stop before writing anything
        raise RuntimeError(f"export: weights do not match the exported model (missing {missing[:4]}, unexpected {unexpected[:4]})")
    model.load_state_dict(sd, strict=True, assign=True)
    base = peft_model.get_base_model()
    model.generation_config = base.generation_config
    model.eval()
    return model


def main(settings: ExportSettings) -> int:
    """``neuronmoe export``: print the folder written."""
    print(export(settings))
    return 0


def export(s: ExportSettings) -> Path:
    """Check, load base + adapter, write the folder (atomically); optionally upload it. Returns ``out``."""
    plan = plan_export(s)
    import torch
    from transformers import AutoTokenizer

    from neuronmoe import register_peft
    from neuronmoe.models import load_model
    from neuronmoe.models.adapter import load_adapter
    from neuronmoe.utils.io import atomic_dir, atomic_write_text
    from neuronmoe.utils.lock import output_lock

    register_peft()
    log.info("loading %s (%s) + adapter %s", plan.model, plan.dtype, plan.adapter)
    base = load_model(plan.model, dtype=getattr(torch, plan.dtype), device=s.device)
    peft_model = load_adapter(base, plan.adapter, "--adapter")
    peft_model.eval()
    exported = build_exported_model(plan, peft_model)
    tok = AutoTokenizer.from_pretrained(plan.model_path)
    with output_lock(plan.out, f"--out {plan.out}"), atomic_dir(plan.out, overwrite=True) as tmp:
        exported.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        shutil.copyfile(MODELING_FILE, tmp / MODELING_FILE.name)
        atomic_write_text(tmp / "README.md", export_card(plan))
        _write_manifest(tmp, plan, s)
        _shareable(tmp)
    log.info("wrote %s", plan.out)
    if plan.push_to_hub:
        push(plan.out, plan.push_to_hub, private=s.private)
    return plan.out


def _shareable(folder: Path) -> None:
    """The permissions save_pretrained would give (temporary files and folders are created owner-only)."""
    from neuronmoe.utils.io import follow_umask

    follow_umask(folder, folder=True)
    for f in folder.iterdir():
        if f.is_file():
            follow_umask(f)


def push(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload an exported folder to the Hugging Face Hub (``huggingface_hub``; needs a token); returns the URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             commit_message="NeuronMoE export", ignore_patterns=["manifest.json"])
    log.info("pushed %s to %s", folder, repo_id)
    return str(getattr(info, "commit_url", info))


def _write_manifest(folder: Path, plan: ExportPlan, settings: ExportSettings | None = None) -> None:
    from neuronmoe.models import describe
    from neuronmoe.utils import Manifest, sha256_file, write_manifest
    from neuronmoe.utils.manifest import describe_files

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != "manifest.json")
    write_manifest(folder, Manifest(
        stage="export",
        config={"dtype": plan.dtype, "experts_per_layer": plan.experts_per_layer, "top_k": plan.top_k,
                "base_model_type": plan.base_model_type},
        inputs={"model": describe(plan.model),
                "adapter": {"path": str(plan.adapter.resolve()),
                            **{f.name: sha256_file(f) for f in sorted(plan.adapter.glob("adapter_*")) if f.is_file()}}},
        counts={"moe_layers": sum(1 for e in plan.experts_per_layer if e > 1),
                "total_experts": sum(plan.experts_per_layer)},
        files=describe_files(folder, files), settings=settings,
    ))


def export_card(plan: ExportPlan) -> str:
    """README.md of the exported folder."""
    from neuronmoe import __version__
    from neuronmoe.evaluation.runner import added_params

    epl = plan.experts_per_layer
    moe = [i for i, e in enumerate(epl) if e > 1]
    where = plan.push_to_hub or "path/to/this/folder"
    adapter_card = plan.adapter / "README.md"
    lines = [
        "---",
        "library_name: transformers",
        f"base_model: {plan.model}",
        "pipeline_tag: text-generation",
        "tags: [neuronmoe, mixture-of-experts, custom_code]",
        "---",
        "",
        f"# NeuronMoE model: {plan.model} + {plan.adapter.name}",
        "",
        f"**{plan.model}** ({plan.base_model_type}) with the dense MLP of {len(moe)} of {len(epl)} decoder layers "
        f"upcycled into a routed mixture of experts by a NeuronMoE adapter (Li & Yanaka, EACL 2026), exported by "
        f"neuronmoe {__version__} into one folder that plain `transformers` loads (the modeling code is "
        f"`modeling_neuronmoe.py` in this folder, so `trust_remote_code=True` is needed). The other layers are the "
        f"base architecture's own.",
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"model = AutoModelForCausalLM.from_pretrained({where!r}, trust_remote_code=True)",
        f"tok = AutoTokenizer.from_pretrained({where!r})",
        "```",
        "",
        "```bash",
        f"lm_eval --model hf --model_args pretrained={where},trust_remote_code=True --tasks TASKS",
        "```",
        "",
        "## Mixture of experts",
        "",
        f"* experts per layer (expert 0 = the base model's MLP): `{','.join(str(e) for e in epl)}` "
        f"({sum(epl)} in all, {sum(e - 1 for e in epl)} new; MoE layers {', '.join(map(str, moe))})",
        f"* routing: float32 router, softmax over the experts, top-{plan.top_k}, weights renormalised to sum to 1",
        f"* parameters added to the base: {added_params(epl, plan.base_config):,}",
        f"* weights: {plan.dtype} (routers float32)",
        "",
        "The base model's licence and terms apply to this model.",
        "",
    ]
    body = adapter_card.read_text(encoding="utf-8") if adapter_card.is_file() else ""
    if "# NeuronMoE adapter" in body:  # the trainer's card (not PEFT's empty template)
        if body.startswith("---"):
            end = body.find("\n---", 3)
            body = body[end + 4:] if end >= 0 else body
        lines += ["## The adapter's model card", "", _demote_headings(body.strip()), ""]
    return "\n".join(lines)


def _demote_headings(md: str) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" * min(len(m.group(1)) + 2, 6) + " ", md, flags=re.MULTILINE)
