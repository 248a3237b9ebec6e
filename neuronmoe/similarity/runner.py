"""The ``neuronmoe similarity`` stage: prepared texts -> per-layer similarity -> LayerMoE allocation.

:func:`run_similarity` takes the resolved settings (:class:`~neuronmoe.similarity.settings.SimilaritySettings`:
``neuronmoe/configs/similarity.yaml``, a named setting, ``--config``, environment, flags) and runs the stage
as named steps: :func:`plan_similarity` (the languages, every text present before any work, the tokenizer,
the budget and reference), :func:`measure`, :func:`layermoe_record`, :func:`write_similarity` and the allocation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuronmoe.errors import ConfigError
from neuronmoe.similarity.settings import SimilaritySettings


@dataclass
class SimilarityRun:
    """What :func:`plan_similarity` checked and resolved before anything is written."""

    settings: SimilaritySettings
    out_root: Path
    data_dir: Path
    files: dict[str, Path]  #: language -> its jsonl
    texts: dict[str, Any]  #: language -> its texts (read lazily)
    config: Any  #: the base model's config
    budget: float
    reference: Any
    tokenizer: Any
    tokenizer_fp: str

    @property
    def similarity_dir(self) -> Path:
        from neuronmoe.layout import Layout

        return Layout(self.out_root).similarity


def main(settings: SimilaritySettings) -> int:
    """``neuronmoe similarity``."""
    run_similarity(settings)
    return 0


def run_similarity(s: SimilaritySettings) -> dict[str, Any]:
    """Run the stage; returns the allocation record. Writes nothing before every input is checked."""
    from neuronmoe.allocation.store import write_allocation
    from neuronmoe.layout import Layout
    from neuronmoe.models import num_layers
    from neuronmoe.utils.lock import output_lock

    run = plan_similarity(s)
    sim_dir, languages = run.similarity_dir, s.languages
    with output_lock(sim_dir, f"similarity output folder {sim_dir}"):  # a second run into it stops here
        sim, scores, used, facts = measure(s, run.tokenizer, run.texts)
        record, alloc_error = layermoe_record(s, scores, run.budget, run.config, run.reference)
        write_similarity(run, sim, scores, used, {**facts, "budget": run.budget, "num_layers": num_layers(run.config)})
        print(f"{sim_dir}: similarity of {', '.join(languages)} over {num_layers(run.config)} layers "
              f"(tokens: {', '.join(f'{k}={v}' for k, v in used.items())})")
        if alloc_error is not None:
            raise alloc_error
        out = Path(s.allocation_out) if s.allocation_out else Layout(run.out_root).allocation(record["name"], "--name")
        json_path, _ = write_allocation(record, out)
    print(f"{json_path}: {record['total_experts']} experts (budget {run.budget:g}) {record['experts_per_layer']}")
    return record


def plan_similarity(s: SimilaritySettings) -> SimilarityRun:
    """Every input checked: each language's file (present, a valid first text), the model, the budget, the
    reference allocation and the data's tokenizer (the files' sha256 equal to the data manifest's)."""
    from neuronmoe.allocation.store import load_allocation
    from neuronmoe.layout import Layout
    from neuronmoe.models import load_config, load_tokenizer, num_layers
    from neuronmoe.utils.checks import check_data_tokenizer, check_input_files
    from neuronmoe.utils.fingerprint import tokenizer_fingerprint

    layout = Layout(s.output_dir)
    data_dir = Path(s.data_dir) if s.data_dir else layout.data
    files = data_files(data_dir, s.split, list(s.targets), s.old)
    texts = read_all(files)
    config = load_config(s.model)
    budget = layermoe_budget(s, num_layers(config))
    reference = load_allocation(s.reference, config, output_dir=layout.root, flag="--reference") if s.reference else None
    tok = load_tokenizer(s.model)
    tok_fp = tokenizer_fingerprint(tok)
    check_input_files(data_dir, check_data_tokenizer(data_dir, tok_fp, s.model), list(files.values()))
    return SimilarityRun(settings=s, out_root=layout.root, data_dir=data_dir, files=files, texts=texts, config=config,
                         budget=budget, reference=reference, tokenizer=tok, tokenizer_fp=tok_fp)


def data_files(data_dir: Path, split: str, targets: list[str], old: list[str]) -> dict[str, Path]:
    """Each language's jsonl: ``data/<split>/<lang>.jsonl``; ``documents``: train/ (new) and replay/ (old)."""
    from neuronmoe.layout import Layout

    layout = Layout(data_dir.parent)
    if split == "documents":
        return {**{x: layout.data_file("replay", x, data_dir) for x in old},
                **{x: layout.data_file("train", x, data_dir) for x in targets}}
    return {lang: layout.data_file(split, lang, data_dir) for lang in old + targets}


def read_all(files: dict[str, Path]) -> dict[str, Any]:
    """Every language's texts, each file checked before any work; read lazily (training documents can be GBs:
    the capture stops at the token budget)."""
    from neuronmoe.utils.io import iter_texts, read_texts

    for lang, f in files.items():
        read_texts(f, lang, limit=1)  # present, with a valid first text
    def reader(path: Path, lang: str) -> Any:  # a document over 1 MiB comes in chunks (similarity reads its head)
        return iter_texts(path, lang, long_text=True)

    return {lang: _Texts(f, lang, reader) for lang, f in files.items()}


class _Texts:
    """A re-iterable view of one language's texts (a fresh read per iteration)."""

    def __init__(self, path: Path, lang: str, reader: Any) -> None:
        self.path, self.lang, self.reader = path, lang, reader

    def __iter__(self) -> Any:
        return self.reader(self.path, self.lang)


def layermoe_budget(s: SimilaritySettings, n_layers: int) -> float:
    """``--budget``, else ``round(budget_per_layer x layers)``."""
    budget = s.budget if s.budget is not None else round(float(s.budget_per_layer) * n_layers)
    if not budget > 0:
        raise ConfigError(f"{s.origin('budget_per_layer')}: the budget must be positive, got {budget}")
    return budget


def measure(s: SimilaritySettings, tok: Any, texts: dict[str, Any]) -> tuple[np.ndarray, Any, dict[str, int], dict[str, Any]]:
    """Load the model, capture the hidden states, return (similarity [L, n, n], layer scores, tokens used, facts)."""
    from neuronmoe.models import load_model
    from neuronmoe.similarity.capture import Capture, capture_unit_sums
    from neuronmoe.similarity.core import layer_scores
    from neuronmoe.utils.device import resolve_device

    device = resolve_device(s.device)
    max_tokens = s.max_tokens if s.max_tokens is not None else int(
        s.tokens_per_language if device.type == "cuda" else s.tokens_per_language_cpu)
    dtype = s.dtype
    if dtype in (None, "", "auto") and device.type == "cpu" and s.cpu_dtype:
        dtype = s.cpu_dtype
    model = load_model(s.model, dtype=dtype, device=device)
    how = Capture(max_tokens=max_tokens, batch_size=int(s.batch_size), max_length=int(s.max_length),
                  include_bos=bool(s.include_bos), site=s.capture_site)
    acc, used = capture_unit_sums(model, tok, texts, how)
    sim = acc.similarity()
    return sim, layer_scores(sim, s.languages, list(s.targets), s.layer_score), used, {
        "max_tokens": max_tokens, "device": str(device), "dtype": str(dtype), "layer_score": s.layer_score,
        "include_bos": bool(s.include_bos)}


def layermoe_record(s: SimilaritySettings, scores: Any, budget: float, config: Any,
                    reference: Any) -> tuple[dict[str, Any] | None, ValueError | None]:
    """The LayerMoE allocation record, or the error that prevents it (e.g. a non-positive similarity):
    the measurement is kept either way."""
    from neuronmoe.allocation import core as acore
    from neuronmoe.allocation.store import build_record
    from neuronmoe.layout import Layout
    from neuronmoe.models import model_identity

    try:
        experts = acore.layermoe_allocate([float(s) for s in scores], budget)
        return build_record(
            experts, name=s.allocation_name, mode="similarity", source=s.source, targets=list(s.targets), e_min=1,
            e_max=None, rounding="ceil", scores=[float(x) for x in scores], model=model_identity(s.model),
            config=config, reference=reference,
            extra={"label": "LayerMoE", "budget": budget, "old_langs": s.old, "capture_site": s.capture_site,
                   "layer_score": s.layer_score, "setting": s.setting,
                   "inputs": {"similarity_dir": str(Layout(s.output_dir).similarity)}},
        ), None
    except ValueError as e:
        return None, e


#: what each --layer-score means (the manifest records it)
SCORE_MEANS = {"layermoe": "mean of the new-new group mean and the new-old group mean",
               "pairs": "mean over the new-new and new-old pairs"}


def similarity_config(run: SimilarityRun, facts: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``config``: the settings and facts that decide the measurement."""
    from neuronmoe.models import model_identity

    s = run.settings
    return {"model": model_identity(s.model), "source": s.source, "targets": list(s.targets), "old_langs": s.old,
            "languages": s.languages, "split": s.split, "capture_site": s.capture_site, "max_tokens": facts["max_tokens"],
            "batch_size": int(s.batch_size), "max_length": int(s.max_length), "budget": facts["budget"],
            "num_layers": facts["num_layers"], "device": facts["device"], "dtype": facts["dtype"], "setting": s.setting,
            "include_bos": facts["include_bos"], "layer_score": facts["layer_score"],
            "layer_score_means": SCORE_MEANS[facts["layer_score"]]}


def write_similarity(run: SimilarityRun, sim: np.ndarray, scores: Any, used: dict[str, int], facts: dict[str, Any]) -> None:
    """``similarity.npz``, ``scores.csv`` and the manifest, as one atomic folder."""
    from neuronmoe.utils import Manifest, atomic_dir, sha256_file, write_manifest
    from neuronmoe.utils.fingerprint import config_fingerprint
    from neuronmoe.utils.io import atomic_write_text
    from neuronmoe.utils.manifest import describe_files

    languages = run.settings.languages
    with atomic_dir(run.similarity_dir, overwrite=True) as tmp:
        np.savez(tmp / "similarity.npz", sim=sim.astype(np.float64), languages=np.array(languages),
                 token_counts=np.array([used[x] for x in languages]), scores=np.asarray(scores, dtype=np.float64))
        atomic_write_text(tmp / "scores.csv", "layer,score\n" + "".join(f"{i},{float(s):.10g}\n" for i, s in enumerate(scores)))
        man = Manifest(
            stage="similarity", config=similarity_config(run, facts), settings=run.settings,
            inputs={"data": {lang: {"path": str(f), "sha256": sha256_file(f)} for lang, f in run.files.items()},
                    "base_model_fingerprint": config_fingerprint(run.config), "tokenizer_fingerprint": run.tokenizer_fp},
            counts={"tokens": used},
        )
        man.files = describe_files(tmp, ["similarity.npz", "scores.csv"])
        write_manifest(tmp, man)
