"""The output tree as code: names that become paths, safe --overwrite, CONTRACTS.md's tree."""
from __future__ import annotations

from pathlib import Path

import pytest

from neuronmoe.errors import ConfigError, StateError
from neuronmoe.layout import TREE, Layout, check_name, remove_run_folder, render_tree

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("bad", ["", " ", ".", "..", "../x", "a/b", "/abs", "a\\b", "-rf", ".hidden", "a\x00b", "tab\tname",
                                 "x" * 201])
def test_names_that_are_not_one_path_component_are_refused(bad):
    with pytest.raises(ConfigError, match=r"^--run-name "):
        check_name(bad, "--run-name")


@pytest.mark.parametrize("good", ["neuronmoe-s1", "layermoe_tr-s2", "v1.2", "ελληνικά", "run@2"])
def test_ordinary_names_pass(good):
    assert check_name(good, "--name") == good


def test_layout_paths_check_their_names(tmp_path):
    lay = Layout(tmp_path)
    assert lay.adapter("neuronmoe-s1") == tmp_path / "train" / "neuronmoe-s1" / "adapter"
    assert lay.allocation("neuronmoe") == tmp_path / "allocation" / "neuronmoe.json"
    assert lay.marker("eval", "dense") == tmp_path / "eval" / "dense" / "manifest.json"
    with pytest.raises(ConfigError, match="--run-name '..'"):
        lay.train_run("..")
    with pytest.raises(ConfigError, match="--name '../../x'"):
        lay.allocation("../../x")


def _run(stage_dir: Path, name: str, marker: str | None = "manifest.json") -> Path:
    d = stage_dir / name
    d.mkdir(parents=True)
    if marker:
        (d / marker).write_text("{}")
    return d


def test_overwrite_removes_only_a_run_folder_of_its_stage(tmp_path):
    train = tmp_path / "train"
    run = _run(train, "a")
    remove_run_folder(run, train)
    assert not run.exists() and train.exists()
    with pytest.raises(StateError, match="not a run folder directly inside"):
        remove_run_folder(tmp_path, train)  # the output root itself
    with pytest.raises(StateError, match="not a run folder directly inside"):
        remove_run_folder(train, train)
    deep = _run(train / "a2", "b")
    with pytest.raises(StateError, match="not a run folder directly inside"):
        remove_run_folder(deep, train)
    stranger = _run(train, "mine", marker="notes.txt")
    with pytest.raises(StateError, match="holds no manifest or lock"):
        remove_run_folder(stranger, train)
    assert (stranger / "notes.txt").exists()


def test_overwrite_never_follows_a_symlink(tmp_path):
    train = tmp_path / "train"
    target = _run(tmp_path / "elsewhere", "data")
    train.mkdir()
    (train / "link").symlink_to(target)
    with pytest.raises(StateError, match="symbolic link"):
        remove_run_folder(train / "link", train)
    assert (target / "manifest.json").exists()


def test_contracts_md_shows_the_tree_of_the_code():
    text = (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
    assert render_tree() in text, "docs/CONTRACTS.md: paste the output of neuronmoe.layout.render_tree()"
    assert len({p for p, _, _ in TREE}) == len(TREE)
