"""Document processing for the paper-suite task YAMLs in this folder (loaded by lm-eval)."""
import re

_BRACKETS = re.compile(r"\[[^\]]*\]")
_SPACES = re.compile(r"  +")


def _clean(text):
    """HellaSwag's WikiHow part carries ``[title]``-style markers: drop them."""
    text = (text or "").strip().replace(" [title]", ". ")
    return _SPACES.sub(" ", _BRACKETS.sub("", text))


def process_hellaswag(dataset):
    """Map HellaSwag rows (activity_label, ctx_a, ctx_b, endings, label) onto query/choices/gold."""

    def one(doc):
        ctx_b = doc.get("ctx_b") or ""
        ctx = (doc.get("ctx_a") or "") + " " + (ctx_b[:1].upper() + ctx_b[1:])
        label = str(doc.get("label", "")).strip()
        return {
            "query": _clean(f"{doc.get('activity_label') or ''}: {ctx}"),
            "choices": [_clean(e) for e in doc["endings"]],
            "gold": int(label) if label.isdigit() else -1,
        }

    return dataset.map(one).filter(lambda d: d["gold"] >= 0)
