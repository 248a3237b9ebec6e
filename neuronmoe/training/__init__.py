"""Two-stage MoE training (``neuronmoe train --stage 1|2``) on the Hugging Face Trainer.

* :mod:`.data` — jsonl / ``hf:`` sources, packing with per-token language flags, cache, collator
* :mod:`.packing` — the streaming build behind it (``datasets`` map, seeded permutation, block writer)
* :mod:`.settings` — :class:`TrainSettings` (profile YAMLs + ``--config`` + environment + flags + ``--set``)
  and the ``train`` subcommand; :mod:`.stage` — the subcommand's function on resolved settings
* :mod:`.trainer` — ``MoETrainer`` (LM + MoE losses, metrics.jsonl, tokens/s, expert load)
* :mod:`.run` — one stage end to end (input checks, run folder, resume, adapter, manifest)
* :mod:`.perplexity` — held-out perplexity; :mod:`.model_card` — the adapter's README.md
"""
