import json

import pytest

from neuronmoe.utils import atomic_write_json, read_json
from neuronmoe.utils.io import atomic_dir
from neuronmoe.utils.manifest import Manifest, describe_files, load_manifest, verify_files, write_manifest


def test_describe_files_accepts_paths_relative_to_root_or_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "out" / "stage"
    atomic_write_json(root / "a.json", {"x": 1})
    atomic_write_json(root / "sub" / "b.json", {"y": 2})
    rel_root = root.relative_to(tmp_path)  # "out/stage", as a CLI given --output-dir out passes it
    got = describe_files(rel_root, [rel_root / "a.json", "sub/b.json", root / "a.json"])
    assert sorted(got) == ["a.json", "sub/b.json"]
    assert all(len(v["sha256"]) == 64 and v["bytes"] > 0 for v in got.values())


def test_manifest_roundtrip_and_tamper_detection(tmp_path):
    atomic_write_json(tmp_path / "f.json", {"k": "v"})
    write_manifest(tmp_path, Manifest(stage="t", files=describe_files(tmp_path, ["f.json"]), counts={"n": 1}))
    man = load_manifest(tmp_path)
    assert man["stage"] == "t" and man["counts"] == {"n": 1} and "torch" in man["versions"]
    assert verify_files(tmp_path, man) == []
    (tmp_path / "f.json").write_text("tampered")
    assert verify_files(tmp_path, man) == ["f.json"]


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "d"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "ok.txt").write_text("y")
    assert (target / "ok.txt").read_text() == "y"


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json"):
        read_json(tmp_path / "bad.json")
    assert json.loads((tmp_path / "bad.json").read_text() + "}") == {}


def test_resolve_dtype_fast_follows_native_bf16(monkeypatch, caplog):
    import torch

    from neuronmoe.utils import device as dev

    for native, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda native=native: native)
        assert dev.resolve_dtype("fast", "cpu") is want
        assert dev.resolve_dtype("auto", "cpu") is torch.float32  # training/eval default on CPU stays fp32
    # an explicit bf16 on a CPU without it is honoured, with a warning
    dev._warn_slow_bf16.cache_clear()
    with caplog.at_level("WARNING"):
        assert dev.resolve_dtype("bf16", "cpu") is torch.bfloat16
    assert "emulated" in caplog.text
    with pytest.raises(ValueError, match="--dtype: unknown dtype"):
        dev.resolve_dtype("half-ish", "cpu")
