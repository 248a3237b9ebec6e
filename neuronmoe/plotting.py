"""One consistent figure style for every figure the project draws (PNG + PDF, atomic)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402

#: language -> colour, stable across figures
LANG_COLORS = {
    "en": "#1f77b4", "el": "#d62728", "tr": "#2ca02c", "hu": "#9467bd", "de": "#8c564b",
    "es": "#e377c2", "fr": "#7f7f7f", "ja": "#bcbd22", "zh": "#17becf",
}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def lang_color(lang: str, i: int = 0) -> str:
    return LANG_COLORS.get(lang, PALETTE[i % len(PALETTE)])


def apply_style() -> None:
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 160,
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.labelsize": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.fontsize": 8,
            "legend.frameon": False,
            "pdf.fonttype": 42,
        }
    )


def new_figure(width: float = 7.0, height: float = 3.2, **kw: Any):
    apply_style()
    return plt.subplots(figsize=(width, height), **kw)


def save_figure(fig: Any, stem: str | Path, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf`` (temp file + rename); close it."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    fig.tight_layout()
    for fmt in formats:
        target = stem.with_name(f"{stem.name}.{fmt}")  # not with_suffix: stems may contain dots
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fig.savefig(tmp, format=fmt)
        os.replace(tmp, target)
        out.append(target)
    plt.close(fig)
    return out
