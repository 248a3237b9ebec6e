"""``neuronmoe train --stage 1|2`` on resolved settings (no argument parsing here): the recipe itself is
:func:`neuronmoe.training.run.train` (plan, trainer arguments, data, model, fit, finalise)."""
from __future__ import annotations

from neuronmoe.training.settings import TrainSettings


def train_main(s: TrainSettings) -> int:
    """Train one stage; prints the adapter folder (or that the run is already complete)."""
    from neuronmoe.training.run import train

    res = train(s)
    if res.get("skipped"):
        print(f"{res['run_dir']}: already complete")
    else:
        print(f"{res['run_dir']}/adapter")
    return 0
