"""What a figure draws, read back from the matplotlib objects (figure tests check data, not file sizes).

``drawn`` (a fixture: ``from support.figures import drawn`` in a conftest) records, for every figure the package
saves through ``neuronmoe.plotting.save_figure``, a :class:`Drawn` summary keyed by the file stem."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@dataclass
class AxesData:
    title: str
    xlabel: str
    ylabel: str
    bars: dict[str, list[float]]  #: legend label (or "_bars") -> bar heights in drawing order
    lines: dict[str, tuple[list[float], list[float]]]  #: legend label -> (x, y)
    images: list[np.ndarray]
    xticklabels: list[str]
    yticklabels: list[str]
    legend: list[str]


@dataclass
class Drawn:
    stem: str
    axes: list[AxesData] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def ax(self) -> AxesData:
        """The main axes (the first)."""
        return self.axes[0]


def _axes_data(ax: Any) -> AxesData:
    bars: dict[str, list[float]] = {}
    for c in ax.containers:
        label = c.get_label() if not str(c.get_label()).startswith("_") else "_bars"
        bars.setdefault(label, []).extend(float(p.get_height()) for p in getattr(c, "patches", []))
    lines = {str(ln.get_label()): ([float(v) for v in ln.get_xdata()], [float(v) for v in ln.get_ydata()])
             for ln in ax.get_lines()}
    legend = [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
    return AxesData(ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), bars, lines,
                    [np.ma.filled(np.ma.asarray(im.get_array(), dtype=float), np.nan) for im in ax.get_images()],
                    [t.get_text() for t in ax.get_xticklabels()], [t.get_text() for t in ax.get_yticklabels()], legend)


@pytest.fixture
def drawn(monkeypatch) -> dict[str, Drawn]:
    """Every figure saved during the test, by stem, with what its axes hold."""
    from neuronmoe import plotting

    records: dict[str, Drawn] = {}
    real = plotting.save_figure

    def spy(fig: Any, stem: Any, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
        fig.canvas.draw()  # tick labels are set at draw time
        rec = Drawn(Path(stem).name, [_axes_data(a) for a in fig.axes if a.get_label() != "<colorbar>"])
        rec.files = real(fig, stem, formats)
        records[rec.stem] = rec
        return rec.files

    monkeypatch.setattr(plotting, "save_figure", spy)
    return records
