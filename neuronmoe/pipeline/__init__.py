"""End-to-end orchestration: the miniature reproduction (``neuronmoe pipeline``) and the paper-scale
plan (``neuronmoe reproduce-paper``).

``neuronmoe pipeline`` runs every stage as its own ``python -m neuronmoe <stage>`` process, in order:
prepare-data, neurons, similarity (LayerMoE allocation), allocate (NeuronMoE pair, NeuronMoE-EN),
stage-1 training of every allocation, stage 2 of NeuronMoE, evaluation of the dense model and of every
run, the per-expert analysis of NeuronMoE-S1, figures, and ``$OUTPUT_DIR/report.md``.

* :mod:`.settings`: the two subcommands' settings (:class:`PipelineSettings`, :class:`ReproduceSettings`);
  :mod:`.stage`: the two subcommands on resolved settings;
* :mod:`.plan`: the stages and their order (:func:`plan`), each command rendered from its stage's settings by
  :mod:`.commands`;
* :mod:`.run`: fingerprints, skip/resume, the stages' environment (:func:`run_pipeline`);
* :mod:`.report`: ``report.md`` (:func:`build_report`);
* :mod:`.paper`: the paper-scale plan and its dry run (:func:`paper_plan`, :func:`paper_dry_run`);
* :mod:`.experiments`: the paper's named experiments (``configs/experiments.yaml``) planned by :mod:`.paper`,
  and each one's ``report.md``;
"""
from neuronmoe.pipeline.paper import PAPER_TARGETS, TABLE5_EN_EL, paper_dry_run, paper_plan
from neuronmoe.pipeline.plan import TABLE_ROWS, Stage, plan
from neuronmoe.pipeline.report import build_report, write_report
from neuronmoe.pipeline.run import fingerprint, is_complete, run_pipeline, state_path
from neuronmoe.pipeline.settings import PipelineSettings, ReproduceSettings

__all__ = ["PAPER_TARGETS", "TABLE5_EN_EL", "paper_dry_run", "paper_plan", "TABLE_ROWS", "PipelineSettings", "ReproduceSettings",
           "Stage", "plan", "build_report", "write_report", "fingerprint", "is_complete", "run_pipeline", "state_path"]
