"""Settings of ``neuronmoe pipeline`` (:class:`PipelineSettings`, the miniature reproduction) and ``neuronmoe
reproduce-paper`` (:class:`ReproduceSettings`, the paper-scale plan). docs/pipeline.md describes both."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from neuronmoe.errors import ConfigError
from neuronmoe.settings import Command, Settings, parse_list, read_env, setting

DEFAULT_NEG_LANGS = ["tr", "hu", "de", "es", "fr", "ja", "zh"]
TRAIN_PROFILES = ("auto", "paper", "cpu")


def _ints(text: str) -> list[int]:
    return [int(x) for x in parse_list(text)]


@dataclass(kw_only=True)
class PipelineSettings(Settings):
    """The miniature reproduction: one new language, every stage with the pipeline's settings."""

    COMMAND = "pipeline"

    output_dir: str = setting("outputs", env="OUTPUT_DIR", yaml=False, metavar="DIR", help="root folder of every stage's outputs")
    model: str = setting("smollm2-135m", env="BASE_MODEL_PATH", yaml=False, metavar="MODEL",
                         help="base model: a built-in alias (smollm2-135m, gemma3-270m), a local HF model folder, or a hub id")
    source: str = setting("en", env="SOURCE_LANG", help="old (source) language (else the first of OLD_LANGS)")
    target: str = setting("el", env="NEW_LANGS", env_aliases=("TARGET_LANG",), help="new (target) language, one")
    old_langs: list[str] | None = setting(None, env="OLD_LANGS",
                                          help="old languages kept: replay data, stage-2 replay, LayerMoE's old group "
                                               "(default: the source)")
    neg_langs: list[str] | None = setting(None, env="NEG_LANGS",
                                          help="extra neuron-analysis languages (negatives), comma separated, or 'none' "
                                               f"(else LANGUAGES minus the new and old ones; default {','.join(DEFAULT_NEG_LANGS)})")
    num_sentences: int = setting(200, env="NUM_SENTENCES", range=(1, None),
                                 help="neuron-analysis sentences per language (200: the allocation's stability, docs/allocation.md)")
    profile: str = setting("auto", env="TRAIN_PROFILE", choices=TRAIN_PROFILES,
                           help="training profile: auto = cpu profile without a GPU")
    eval_suite: str = setting("local", env="EVAL_SUITE", help="evaluation suite (local: offline)")
    train_heldout: bool = setting(False, env="TRAIN_HELDOUT",
                                  help="also let every training run score its held-out perplexity (train's heldout_languages: "
                                       "auto); off, the evaluate stages alone measure held-out bits per byte of every run on "
                                       "the same held-out files, with their uncertainty")
    analysis_limit: int = setting(0, env="ANALYSIS_LIMIT", range=(0, None),
                                  help="samples per language for the expert analysis, 0 = all")
    bootstrap: int = setting(100, range=(0, None), metavar="N",
                             help="replicates of the NeuronMoE allocation's stability analysis (allocate --bootstrap; 0 = none)")
    sample_sizes: list[int] = setting(default_factory=lambda: [50, 100], parse=_ints, metavar="N,N,...",
                                      help="sentences per language of its sample-size curve (allocate --sample-sizes; 'none' = none)")
    only: list[str] = setting(default_factory=list, env="PIPELINE_ONLY", yaml=False, metavar="STAGES",
                              help="run only these stages, comma separated")
    rerun: list[str] = setting(default_factory=list, env="PIPELINE_RERUN", yaml=False, metavar="STAGES",
                               help="run these stages even if complete, comma separated; their dependants follow. Needed after "
                                    "changing a setting given through a stage's environment variable, which the fingerprints do not see")
    dry_run: bool = setting(False, switch=True, yaml=False, help="print the commands of the stages that would run, run nothing")
    report_only: bool = setting(False, switch=True, yaml=False,
                                help="only (re)write $OUTPUT_DIR/report.md from the outputs present")
    #: stage name -> extra CLI arguments (tests and callers; not a setting)
    extra: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def resolve(cls, flags: Any = None, *, environ: Mapping[str, str] | None = None, **kw: Any) -> PipelineSettings:
        """As :meth:`Settings.resolve`; without SOURCE_LANG the first of OLD_LANGS is the source, and without
        NEG_LANGS the analysis languages of LANGUAGES (minus the new and old ones) are the negatives."""
        environ = os.environ if environ is None else environ
        old = parse_list(environ.get("OLD_LANGS"))
        if old and not environ.get("SOURCE_LANG"):
            environ = {**environ, "SOURCE_LANG": old[0]}
        s: PipelineSettings = super().resolve(flags, environ=environ, **kw)  # type: ignore[assignment]
        s.target = parse_list(s.target)[0]
        everything, _ = read_env(_LANGUAGES, environ, cls.COMMAND)
        if s.neg_langs is None and everything is not None:
            s.neg_langs = [x for x in parse_list(everything) if x != s.target and x not in s.old]
        return s

    def check(self) -> None:
        """Known codes, one new language not among the old ones (checked before anything is planned or run)."""
        from neuronmoe.languages import check_languages

        if len(parse_list(self.target)) != 1:
            self.fail("target", f"{self.target!r}: the miniature pipeline extends the model to one language; run it once "
                                "per language with its own OUTPUT_DIR")
        check_languages(parse_list(self.target), self.origin("target"))
        check_languages(self.old, self.origin("old_langs"))
        if self.negatives:  # `none`: no negatives
            check_languages(self.negatives, self.origin("neg_langs"))
        if parse_list(self.target)[0] in self.old:
            self.fail("target", f"{self.target}: it is also an old language ({','.join(self.old)}); they must differ")
        for n in self.sample_sizes:
            if n < 1:
                self.fail("sample_sizes", f"{n} is out of range [1, inf)")

    @property
    def old(self) -> list[str]:
        """The old languages, the source first."""
        return list(dict.fromkeys([self.source, *(self.old_langs or [])]))

    @property
    def negatives(self) -> list[str]:
        """The negatives: ``neg_langs``, else the default list."""
        return list(DEFAULT_NEG_LANGS if self.neg_langs is None else self.neg_langs)

    @property
    def languages(self) -> list[str]:
        """Every neuron-analysis language: source, target, the other old languages, the negatives."""
        return list(dict.fromkeys([self.source, self.target, *self.old, *self.negatives]))


_LANGUAGES = setting(help="every neuron-analysis language", env="LANGUAGES").metadata["setting"]


@dataclass(kw_only=True)
class ReproduceSettings(Settings):
    """The paper-scale plan: which experiment, model, languages and machine; what to print or check."""

    COMMAND = "reproduce-paper"

    output_dir: str = setting("outputs/paper", env="OUTPUT_DIR", yaml=False, metavar="DIR", help="output root")
    experiment: str | None = setting(None, env="PAPER_EXPERIMENT", yaml=False, metavar="NAME",
                                     help="plan one named experiment of the paper (--list names them), outputs under "
                                          "$OUTPUT_DIR/<name>/ (default: the el/tr/hu plan)")
    list_experiments: bool = setting(False, flag="--list", switch=True, yaml=False,
                                     help="list the named experiments (model, languages, runs, tables, figures) and exit")
    report: bool = setting(False, switch=True, yaml=False,
                           help="with --experiment: write $OUTPUT_DIR/<name>/report.md from the outputs present, and exit")
    model_config: str | None = setting(None, env="PAPER_MODEL_CONFIG", yaml=False,
                                       help="shipped model config used for the checks and parameter budgets (default "
                                            "llama-3.2-3b, or the experiment's)")
    model: str | None = setting(None, env="BASE_MODEL_PATH", env_aliases=("PAPER_MODEL",), yaml=False, metavar="MODEL",
                                help="the model the commands train (hub id or local folder) (default meta-llama/Llama-3.2-3B, "
                                     "or the experiment's)")
    allocations: str = setting("computed", env="PAPER_ALLOCATIONS", choices=("computed", "published"), yaml=False,
                               help="computed: run the method (neuron analysis -> allocation); published: train the paper's "
                                    "own allocations (Tables 2, 8, 9)")
    print_commands: bool = setting(False, switch=True, yaml=False, help="print only the commands, one per line (for scripts)")
    targets: list[str] = setting(default_factory=list, env="NEW_LANGS", env_aliases=("PAPER_TARGETS",), yaml=False,
                                 metavar="LANGS", help="new languages (default el,tr,hu, or the experiment's)")
    nproc: int = setting(8, env="NPROC", env_aliases=("NPROC_PER_NODE",), range=(1, None), yaml=False, metavar="N",
                         help="GPUs per node for torchrun")
    deepspeed: str = setting("zero2", env="DEEPSPEED_CONFIG", yaml=False, help="DeepSpeed config for training")
    dry_run: bool = setting(False, switch=True, yaml=False,
                            help="validate every config and print the exact commands; needs no GPU, weights or data")
    as_json: bool = setting(False, flag="--json", switch=True, yaml=False, help="print the dry-run facts as JSON")
    run: bool = setting(False, switch=True, yaml=False,
                        help="validate, then run the plan through the pipeline's runner: finished stages are skipped, a "
                             "changed input reruns what reads it, training resumes from its checkpoint (scripts/reproduce_paper.sh)")
    only: list[str] = setting(default_factory=list, env="PIPELINE_ONLY", yaml=False, metavar="STAGES",
                              help="with --run: run only these stages, comma separated (--dry-run --run lists them)")
    rerun: list[str] = setting(default_factory=list, env="PIPELINE_RERUN", yaml=False, metavar="STAGES",
                               help="with --run: run these stages even if complete, comma separated")
    # ---- the budget (neuronmoe.budget.hook; issue 22) ----------------------------------------------------------
    gpu: str | None = setting(None, env="PAPER_GPU", yaml=False,
                              help="card the budget is computed for: A100, H100, H200, GH200, L40S, MI300X (default GH200, "
                                   "the paper's); neuronmoe/configs/budget.yaml")
    gpu_memory: float | None = setting(None, env="PAPER_GPU_MEMORY", range=(0, None), lo_open=True, yaml=False, metavar="GIB",
                                       help="memory per device in GiB (default the card's): a training run that does not fit "
                                            "fails the dry run with a per-device batch x accumulation that does")
    mfu: float | None = setting(None, env="PAPER_MFU", range=(0, 1), lo_open=True, yaml=False,
                                help="model FLOP utilisation for the GPU-hours (default the card's figure measured by "
                                     "benchmarks/gpu_check.sh, else a stated assumption)")
    preflight: bool = setting(False, flag="--check", switch=True, yaml=False,
                              help="pre-flight on the machine that will run: read access to the model and every dataset (your "
                                   "token; gated repositories named), sizes from the hub, memory and free disk; exit 2 on a problem")
    accept_allocation_diff: bool = setting(False, switch=True, env="ACCEPT_ALLOCATION_DIFF", yaml=False,
                                           help="computed allocations that differ from the paper's are trained anyway (recorded "
                                                "in the report) instead of stopping before training")

    def check(self) -> None:
        if self.report and not self.experiment:
            raise ConfigError("--report: give --experiment NAME (the el/tr/hu plan's report is `neuronmoe report`)")

    def budget_args(self) -> argparse.Namespace:
        """What :mod:`neuronmoe.budget.hook` reads (``gpu``, ``gpu_memory``, ``mfu``, ``check``, ``accept_allocation_diff``)."""
        return argparse.Namespace(gpu=self.gpu, gpu_memory=self.gpu_memory, mfu=self.mfu, check=self.preflight,
                                  accept_allocation_diff=self.accept_allocation_diff)


def _reported_by_the_command(p: argparse.ArgumentParser) -> None:
    p.set_defaults(report_env=False)  # reported by the command itself, with the variables its stages read


COMMANDS = [
    Command("pipeline", PipelineSettings, "neuronmoe.pipeline.stage:pipeline_main", extra=_reported_by_the_command,
            help="run the miniature reproduction end to end (skips complete stages)",
            description="Runs every stage as its own `python -m neuronmoe <stage>` process, in order, and writes "
            "$OUTPUT_DIR/report.md; a rerun skips complete stages (see docs/pipeline.md)."),
    Command("reproduce-paper", ReproduceSettings, "neuronmoe.pipeline.stage:reproduce_main", extra=_reported_by_the_command,
            help="the paper-scale run (Llama-3.2-3B, el/tr/hu, DeepSpeed ZeRO-2): --dry-run validates and prints it"),
]

__all__ = ["COMMANDS", "DEFAULT_NEG_LANGS", "PipelineSettings", "ReproduceSettings"]


@dataclass(frozen=True)
class PaperPlan:
    """What a paper-scale plan (:func:`neuronmoe.pipeline.paper.paper_plan`) is made of; the defaults are the paper's
    main run (Llama-3.2-3B, en -> el/tr/hu, Table 7). The named experiments (``configs/experiments.yaml``) and
    ``reproduce-paper``'s settings (:class:`ReproduceSettings`) fill it."""

    output_dir: str = "outputs/paper"
    model: str = "meta-llama/Llama-3.2-3B"
    targets: tuple[str, ...] = ("el", "tr", "hu")
    source: str = "en"
    deepspeed: str = "zero2"
    nproc: int = 8
    neg_langs: tuple[str, ...] = ("de", "fr", "ja")
    replay: tuple[str, ...] = ("en", "zh", "es")
    #: Appendix D: stage-1 data and Spanish replay from CulturaX, English replay from SlimPajama, Chinese from SkyPile
    #: (each read with the reference's recipe: neuronmoe/configs/data.yaml hf_datasets)
    data_source: str = "hf:uonlp/CulturaX,en=hf:cerebras/SlimPajama-627B,zh=hf:Skywork/SkyPile-150B,es=hf:uonlp/CulturaX"
    allocations: str = "computed"  #: computed (the method) or published (the paper's own allocations)
    model_config: str = "llama-3.2-3b"  #: names the shipped allocations ({model_config}-{target}-{kind})
    runs: tuple[str, ...] | None = None  #: training runs (paper.plan_runs); None: the el/tr/hu plan
    layermoe_budget: float | None = None  #: B of the LayerMoE baseline (None: the G1 setting's 70)
    capture_site: str | None = None  #: the similarity's --capture-site
    expert_analysis: bool = True  #: the per-expert analysis of NeuronMoE-S1 (Greek)
    accept_allocation_diff: bool = False  #: the allocation gate lets differences through instead of stopping

    @classmethod
    def of(cls, **options: Any) -> PaperPlan:
        """From keyword options (sequences become tuples; an unknown name is a programming error)."""
        seq = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in options.items()}
        return cls(**seq)

    @property
    def old(self) -> list[str]:
        """The old languages: the source first, then the replay languages."""
        return [self.source, *[x for x in self.replay if x != self.source]]

    @property
    def launch(self) -> list[str]:
        """How a training command is started: torchrun with ``nproc`` processes."""
        return ["torchrun", f"--nproc_per_node={self.nproc}", "-m", "neuronmoe"]
