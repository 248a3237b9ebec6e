"""The miniature reproduction's plan: which ``neuronmoe`` commands run, in which order, reading what."""
from __future__ import annotations

from dataclasses import dataclass, field

from neuronmoe.pipeline.commands import argv
from neuronmoe.pipeline.settings import PipelineSettings


@dataclass
class Stage:
    name: str
    argv: list[str]  # arguments after `neuronmoe`
    marker: str  # path (relative to the output dir) whose existence marks completion
    deps: list[str] = field(default_factory=list)
    kind: str = ""  # "train" stages get --resume / --overwrite at run time ("eval": --overwrite when inputs changed)
    launch: list[str] | None = None  # what runs it (``torchrun ... -m neuronmoe``); None: ``python -m neuronmoe``


#: Table-1 rows of the miniature report: (label, eval run, allocation name or None)
TABLE_ROWS = [
    ("Dense", "dense", None),
    ("LayerMoE-S1", "layermoe-s1", "layermoe"),
    ("NeuronMoE-EN", "neuronmoe-en-s1", "neuronmoe-en"),
    ("NeuronMoE-S1", "neuronmoe-s1", "neuronmoe"),
    ("NeuronMoE", "neuronmoe-s2", "neuronmoe"),
]


def plan(cfg: PipelineSettings) -> list[Stage]:
    """The stages of the miniature reproduction, in execution order; every command rendered from its stage's
    settings (:func:`neuronmoe.pipeline.commands.argv`)."""
    cfg.validate()
    st = [*_analysis_stages(cfg), *_training_stages(cfg), *_evaluation_stages(cfg)]
    st.append(Stage("analyze-experts", argv("analyze-experts", output_dir=cfg.output_dir, model=cfg.model, run="neuronmoe-s1",
                                            target=cfg.target, languages=cfg.languages, force=True,
                                            limit=cfg.analysis_limit or None),
                    "analysis/manifest.json", ["data", "train-neuronmoe-s1"]))
    st.append(Stage("figures", argv("figures", output_dir=cfg.output_dir, target=cfg.target), "figures/manifest.json",
                    ["neurons", "allocate-neuronmoe", "similarity", "analyze-experts", "train-layermoe-s1",
                     "train-neuronmoe-en-s1", "train-neuronmoe-s1", "train-neuronmoe-s2"]))
    names = {s.name for s in st}
    for s in st:
        s.argv += cfg.extra.get(s.name, [])
        missing = [d for d in s.deps if d not in names]
        if missing:  # pragma: no cover - a programming error in the tables above
            raise AssertionError(f"{s.name}: unknown deps {missing}")
    return st


def _analysis_stages(cfg: PipelineSettings) -> list[Stage]:
    """Data, neuron analysis, the LayerMoE similarity and the two NeuronMoE allocations."""
    o, m = cfg.output_dir, cfg.model
    common = dict(output_dir=o, model=m)
    sim_old = cfg.old if cfg.old != [cfg.source] else None
    negs = [x for x in cfg.languages if x != cfg.target and x not in cfg.old]
    stability = dict(bootstrap=cfg.bootstrap, sample_sizes=cfg.sample_sizes or None, progress=False) if cfg.bootstrap else {}
    return [
        Stage("data", argv("prepare-data", **common, new_langs=[cfg.target], old_langs=cfg.old, neg_langs=negs,
                           num_samples=cfg.num_sentences), "data/manifest.json"),
        Stage("neurons", argv("neurons", **common, languages=cfg.languages), "neurons/manifest.json", ["data"]),
        Stage("similarity", argv("similarity", **common, source=cfg.source, targets=[cfg.target], old_langs=sim_old,
                                 allocation_name="layermoe"), "similarity/manifest.json", ["data"]),
        Stage("allocate-neuronmoe", argv("allocate", **common, mode="pair", source_lang=cfg.source, targets=[cfg.target],
                                         name="neuronmoe", compare_with="layermoe", **stability),
              "allocation/neuronmoe.json", ["neurons", "similarity"]),
        Stage("allocate-neuronmoe-en", argv("allocate", **common, mode="source-only", source_lang=cfg.source,
                                            targets=[cfg.target], name="neuronmoe-en", reference="layermoe"),
              "allocation/neuronmoe-en.json", ["neurons", "similarity"]),
    ]


def _training_stages(cfg: PipelineSettings) -> list[Stage]:
    """Stage 1 of every allocation, stage 2 of NeuronMoE (``--resume`` / ``--overwrite`` added at run time).

    Without ``train_heldout`` the runs skip their own held-out perplexity (``heldout_languages`` none): the evaluate
    stages score the same held-out files for every run, with uncertainty, and the runs' 8k-token check cost 27 s of
    the LayerMoE-S1 run (and its peak memory: full-vocabulary logits beside the optimizer state).
    """
    o, m = cfg.output_dir, cfg.model
    heldout = None if cfg.train_heldout else []
    st = []
    for alloc, dep in (("layermoe", "similarity"), ("neuronmoe-en", "allocate-neuronmoe-en"), ("neuronmoe", "allocate-neuronmoe")):
        st.append(Stage(f"train-{alloc}-s1", argv("train", stage=1, output_dir=o, model=m, languages=[cfg.target],
                                                  profile=cfg.profile, allocation=alloc, run_name=f"{alloc}-s1",
                                                  heldout_languages=heldout),
                        f"train/{alloc}-s1/manifest.json", ["data", dep], kind="train"))
    st.append(Stage("train-neuronmoe-s2", argv("train", stage=2, output_dir=o, model=m, allocation="neuronmoe",
                                               run_name="neuronmoe-s2", languages=[cfg.target], replay_languages=cfg.old,
                                               profile=cfg.profile, init_adapter=f"{o}/train/neuronmoe-s1/adapter",
                                               heldout_languages=heldout),
                    "train/neuronmoe-s2/manifest.json", ["data", "train-neuronmoe-s1"], kind="train"))
    return st


def _evaluation_stages(cfg: PipelineSettings) -> list[Stage]:
    """The dense model and every run of Table 1."""
    o = cfg.output_dir
    st = []
    for label, run, _alloc in TABLE_ROWS:
        adapter = f"{o}/train/{run}/adapter" if run != "dense" else None
        st.append(Stage(f"eval-{run}", argv("evaluate", output_dir=o, model=cfg.model, suite=cfg.eval_suite,
                                            languages=[cfg.source, cfg.target], run_name=run, label=label, overwrite=True,
                                            adapter=adapter),
                        f"eval/{run}/manifest.json", ["data"] + ([f"train-{run}"] if adapter else [])))
    return st
