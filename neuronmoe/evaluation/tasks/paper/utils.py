"""Document processing for the paper-suite task YAMLs in this folder (loaded by lm-eval)."""
from lm_eval.tasks.hellaswag.utils import process_docs as _lm_eval_hellaswag


def process_hellaswag(dataset):
    """lm-eval's own ``hellaswag`` processing (query / choices / gold), on the labelled rows only.

    The translated copies ship test splits with empty labels; lm-eval's function would fail on
    them (``int("")``), so those rows are dropped first. Every kept row is processed by lm-eval's
    function itself: the text is exactly what lm-eval's English ``hellaswag`` task produces.
    """
    labelled = dataset.filter(lambda d: str(d.get("label") if d.get("label") is not None else "").strip() != "")
    return _lm_eval_hellaswag(labelled)
