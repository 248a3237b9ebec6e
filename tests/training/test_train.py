"""End-to-end stage 1 / stage 2 on a tiny Llama: trainable sets, LPR, artefacts, resume, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support.builders import write_allocation
from train_helpers import TINY_SETS, run_training, write_jsonl
from transformers import TrainerCallback

from neuronmoe.training.run import TrainingInputError
from neuronmoe.training.trainer import StopAtStep
from neuronmoe.utils.checks import BaseModelMismatchError


def _opts(out, tiny_dir, cache_dir, stage=1, **kw):
    sets = list(TINY_SETS) + kw.pop("sets", [])
    kw.setdefault("allocation", "tiny")
    return dict(stage=stage, model=str(tiny_dir), output_dir=str(out), profile="cpu", sets=sets, cache_dir=str(cache_dir), **kw)


def train(kw: dict) -> dict:
    """Resolve the settings of :func:`_opts` as the CLI does, and train."""
    return run_training(**kw)


def _adapter(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / "adapter" / "adapter_model.safetensors"))


def _metrics(run_dir) -> list[dict]:
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory, data_dir, tiny_dir):
    """One stage-1 run shared by the tests that only read it (stage 2 writes a separate run)."""
    out = tmp_path_factory.mktemp("stage1") / "out"
    out.mkdir()
    (out / "data").symlink_to(data_dir)
    write_allocation(out, [3, 1, 2], name="tiny", model_dir=tiny_dir)
    res = train(_opts(out, tiny_dir, tmp_path_factory.getbasetemp() / "tok-cache"))
    return out, res


def test_stage1_trains_experts_and_routers_only(stage1):
    out, res = stage1
    run = Path(res["run_dir"])
    assert run == out / "train" / "tiny-s1"
    groups = res["trainable_parameters"]["by_group"]
    assert set(groups) == {"router", "experts"}  # base frozen
    # tiny llama: hidden 32, MLP 64 -> one expert copy = 3*32*64 parameters; layers 0 (3 experts), 2 (2)
    assert groups["experts"] == (2 + 1) * 3 * 32 * 64 and groups["router"] == 32 * (3 + 2)
    for f in ("resolved_config.yaml", "allocation.json", "data_manifest.json", "metrics.jsonl", "manifest.json",
              "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/README.md"):
        assert (run / f).is_file(), f
    assert (run / "checkpoint-6").is_dir() and (run / "checkpoint-3").is_dir()
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [2, 4, 6]
    for r in rows:
        assert {"loss", "lm_loss", "aux_loss", "learning_rate", "grad_norm", "tokens_per_s", "expert_load"} <= set(r)
        assert "lpr_loss" not in r  # no old-language token in stage 1
        assert set(r["expert_load"]) == {"0", "2"} and len(r["expert_load"]["0"]) == 3
        assert abs(sum(r["expert_load"]["0"]) - 1) < 1e-3
        assert r["loss"] == pytest.approx(r["lm_loss"] + 0.01 * r["aux_loss"], rel=1e-3)
    card = (run / "adapter" / "README.md").read_text()
    assert "PeftModel.from_pretrained" in card and "import neuronmoe" in card and "neuronmoe evaluate" in card
    assert "Greek (el)" in card and "3,1,2" in card
    man = json.loads((run / "manifest.json").read_text())
    assert man["stage"] == "train-stage1" and "adapter/adapter_model.safetensors" in man["files"]
    # the batch contract: world size, per-device batch, accumulation, effective batch, steps, tokens seen
    b = man["counts"]["batch"]
    assert (b["world_size"], b["per_device_train_batch_size"], b["gradient_accumulation_steps"]) == (1, 4, 1)
    assert (b["effective_batch_size"], b["effective_batch_contract"], b["override"]) == (4, 4, False)
    assert b["steps"] == 6 and b["tokens_seen"] == 6 * 4 * 32 == man["counts"]["train_tokens"]
    acfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert (acfg["aux_loss_form"], acfg["lpr_input"]) == ("hf", "probs")
    assert set(man["result"]["perplexity"]) == {"el", "en"}
    assert man["result"]["perplexity"]["el"]["perplexity"] > 1
    # the adapter loads back after `import neuronmoe`
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import neuronmoe  # noqa: F401

    m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir_of(out)), str(run / "adapter"))
    saved = _adapter(run)
    state = {k: v for k, v in m.state_dict().items() if "moe_router" in k}
    assert state and all(any(torch.equal(v, s) for s in saved.values()) for v in state.values())


def tiny_dir_of(out: Path) -> str:
    return json.loads((out / "train" / "tiny-s1" / "manifest.json").read_text())["result"]["model"]


def test_stage2_trains_routers_only_with_lpr(stage1, tiny_dir, cache_dir):
    out, _ = stage1
    res = train(_opts(out, tiny_dir, cache_dir, stage=2, sets=["aux_loss_coef=0.0", "lpr_loss_coef=1.0"]))
    run = Path(res["run_dir"])
    assert run.name == "tiny-s2"
    assert res["trainable_parameters"]["by_group"] == {"router": 32 * (3 + 2)}
    rows = _metrics(run)
    assert all(r["lpr_loss"] > 0 for r in rows)  # old-language (replay) tokens present
    a1, a2 = _adapter(out / "train" / "tiny-s1"), _adapter(run)
    assert a1.keys() == a2.keys()
    routers = [k for k in a1 if "moe_router" in k]
    experts = [k for k in a1 if "moe_experts" in k]
    assert routers and experts
    assert all(not torch.equal(a1[k], a2[k]) for k in routers)  # routers moved
    assert all(torch.equal(a1[k], a2[k]) for k in experts)  # experts frozen
    data = json.loads((run / "data_manifest.json").read_text())["packed"]["counts"]
    assert 0 < data["old_token_fraction"] < 1


class _RoutedExperts(TrainerCallback):
    """Records, after every step, how many experts each MoE layer routes a token to."""

    def __init__(self):
        self.per_step: list[dict[int, int]] = []

    def on_step_end(self, args, state, control, model=None, **kw):
        from neuronmoe.moe import capture_routing

        ids = torch.arange(3, 35).reshape(2, 16).to(next(model.parameters()).device)
        with torch.no_grad(), capture_routing(model) as cap:
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        self.per_step.append({li: rec["expert_ids"].shape[-1] for li, rec in cap.layers.items()})


def test_stage2_top_k_and_train_mode_reach_the_layers(stage1, tiny_dir, cache_dir):
    """`neuronmoe train --stage 2 --top-k 1` routes exactly one expert per token (the stage-1 adapter used 2),
    in training and in the saved adapter; train_mode from the config decides what trains."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import neuronmoe  # noqa: F401
    from neuronmoe.moe import capture_routing

    out, _ = stage1
    s1 = json.loads((out / "train" / "tiny-s1" / "adapter" / "adapter_config.json").read_text())
    assert s1["top_k"] == 2
    seen = _RoutedExperts()
    res = train(_opts(out, tiny_dir, cache_dir, stage=2, run="tiny-s2-k1", flags={"top_k": 1}, callbacks=[seen],
                      sets=["train_mode=experts"]))
    assert len(seen.per_step) == 6 and all(k == {0: 1, 2: 1} for k in seen.per_step)
    assert set(res["trainable_parameters"]["by_group"]) == {"router", "experts"}  # train_mode=experts reached
    a1, a2 = _adapter(out / "train" / "tiny-s1"), _adapter(res["run_dir"])
    assert any(not torch.equal(a1[k], a2[k]) for k in a1 if "moe_experts" in k)
    saved = json.loads((Path(res["run_dir"]) / "adapter" / "adapter_config.json").read_text())
    assert saved["top_k"] == 1 and saved["train_mode"] == "experts"
    m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), str(Path(res["run_dir"]) / "adapter"))
    ids = torch.arange(3, 35).reshape(2, 16)
    with torch.no_grad(), capture_routing(m) as cap:
        m(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert {li: rec["expert_ids"].shape[-1] for li, rec in cap.layers.items()} == {0: 1, 2: 1}


def test_lpr_gradient_moves_routers_towards_expert_0(stage1, tiny_dir):
    """The LPR loss alone is non-zero on old tokens, reaches only the routers, and raises expert-0 probability."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import neuronmoe  # noqa: F401
    from neuronmoe.moe import router_stats

    out, _ = stage1
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir),
                                      str(out / "train" / "tiny-s1" / "adapter"), is_trainable=True)
    model.base_model.set_train_mode("routers")
    model.base_model.set_loss_coefs(0.0, 1.0)
    torch.manual_seed(0)
    ids = torch.randint(3, 250, (4, 24))
    flags = torch.ones_like(ids)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    p0 = []
    for _ in range(5):
        out_ = model(input_ids=ids, attention_mask=torch.ones_like(ids), lang_flags=flags)
        assert float(out_.lpr_loss.detach()) > 0
        p0.append(sum(s["mean_prob"][0] for s in router_stats(model).values()))
        opt.zero_grad()
        out_.moe_loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert grads and all("moe_router" in n for n in grads)
        assert any(float(g.abs().sum()) > 0 for g in grads.values())
        opt.step()
    assert p0[-1] > p0[0] + 1e-3


def test_resume_continues_at_the_same_step_and_data_order(out_dir, tiny_dir, cache_dir):
    full = train(_opts(out_dir, tiny_dir, cache_dir, run="full"))
    with pytest.raises(KeyboardInterrupt):
        train(_opts(out_dir, tiny_dir, cache_dir, run="killed", callbacks=[StopAtStep(3)]))
    killed = out_dir / "train" / "killed"
    assert (killed / "checkpoint-3").is_dir() and not (killed / "manifest.json").exists()
    with pytest.raises(FileExistsError, match="--resume"):  # never silently overwritten
        train(_opts(out_dir, tiny_dir, cache_dir, run="killed"))
    with pytest.raises(TrainingInputError, match="differs"):  # resume with other settings
        train(_opts(out_dir, tiny_dir, cache_dir, run="killed", resume=True, sets=["learning_rate=0.1"]))
    resumed = train(_opts(out_dir, tiny_dir, cache_dir, run="killed", resume=True))
    assert resumed["resumed_from"].endswith("checkpoint-3") and resumed["global_step"] == 6
    a, b = _adapter(full["run_dir"]), _adapter(resumed["run_dir"])
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    ma, mb = _metrics(full["run_dir"]), _metrics(resumed["run_dir"])
    assert [r["step"] for r in mb] == [2, 4, 6]
    assert mb[-1]["loss"] == pytest.approx(ma[-1]["loss"], rel=1e-4)
    # a complete run + --resume is a no-op
    again = train(_opts(out_dir, tiny_dir, cache_dir, run="killed", resume=True))
    assert again["skipped"] is True


def test_save_last_false_skips_only_the_last_checkpoint(stage1, out_dir, tiny_dir, cache_dir):
    """The CPU profile's ``save_last: false``: the same adapter and metrics, checkpoint-3 kept for a kill, no
    checkpoint-6 (the adapter and manifest are the finished run); a kill before them resumes from step 3."""
    _, ref = stage1  # save_last=true (TINY_SETS)
    res = train(_opts(out_dir, tiny_dir, cache_dir, run="nolast", sets=["save_last=false"]))
    run = Path(res["run_dir"])
    assert (run / "checkpoint-3").is_dir() and not (run / "checkpoint-6").exists()
    assert (run / "manifest.json").is_file() and res["global_step"] == 6
    a, b = _adapter(ref["run_dir"]), _adapter(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in _metrics(run)] == [r["loss"] for r in _metrics(ref["run_dir"])]
    assert train(_opts(out_dir, tiny_dir, cache_dir, run="nolast", resume=True, sets=["save_last=false"]))["skipped"]
    # killed after the last step, before the adapter and manifest: it resumes from checkpoint-3 to the same adapter
    with pytest.raises(KeyboardInterrupt):
        train(_opts(out_dir, tiny_dir, cache_dir, run="nolast-killed", sets=["save_last=false"], callbacks=[StopAtEnd()]))
    killed = out_dir / "train" / "nolast-killed"
    assert (killed / "checkpoint-3").is_dir() and not (killed / "checkpoint-6").exists()
    assert not (killed / "manifest.json").exists()
    resumed = train(_opts(out_dir, tiny_dir, cache_dir, run="nolast-killed", resume=True, sets=["save_last=false"]))
    assert resumed["resumed_from"].endswith("checkpoint-3") and resumed["global_step"] == 6
    c = _adapter(resumed["run_dir"])
    for k in a:
        torch.testing.assert_close(a[k], c[k], rtol=1e-5, atol=1e-6)


class StopAtEnd(TrainerCallback):
    """A "kill" when training ends, before the adapter and manifest are written."""

    def on_train_end(self, args, state, control, **kw):
        raise KeyboardInterrupt(f"stopped after step {state.global_step} (test)")


def _no_training_happened(out: Path, run: str) -> bool:
    d = out / "train" / run
    return not d.exists() or not any(d.glob("checkpoint-*"))


def test_bad_inputs_fail_before_training(out_dir, tiny_dir, cache_dir, tmp_path):
    from neuronmoe.testing import save_tiny_model

    # stage 2 without a stage-1 adapter
    with pytest.raises(TrainingInputError, match="stage-1 adapter"):
        train(_opts(out_dir, tiny_dir, cache_dir, stage=2, run="s2-none"))
    # allocation for another model (wrong layer count)
    write_allocation(out_dir, [2, 1, 1, 2], name="four")
    with pytest.raises(BaseModelMismatchError, match=r"four.json: made for another base model \(4 layers, the base model \(llama\) has 3\)"):  # noqa: E501 (an exact message/data row)
        train(_opts(out_dir, tiny_dir, cache_dir, allocation="four"))
    # allocation whose fingerprint names another base (same layer count, other width)
    other = save_tiny_model(tmp_path / "wide", "llama", hidden_size=64, intermediate_size=128)
    write_allocation(out_dir, [3, 1, 2], name="wide", model_dir=other)
    with pytest.raises(BaseModelMismatchError, match="wide.json: made for another base model"):
        train(_opts(out_dir, tiny_dir, cache_dir, allocation="wide"))
    # stage-1 adapter from another base model
    train(_opts(out_dir, other, cache_dir, allocation="wide", run="wide-s1", sets=["max_steps=1", "save_steps=1"]))
    with pytest.raises(BaseModelMismatchError, match="stage-1 adapter .*wide-s1/adapter: made for another base model"):
        train(_opts(out_dir, tiny_dir, cache_dir, stage=2, run="s2-wrong",
                    init_adapter=str(out_dir / "train" / "wide-s1" / "adapter")))
    # cutoff longer than the context
    with pytest.raises(TrainingInputError, match="max_position_embeddings=512"):
        train(_opts(out_dir, tiny_dir, cache_dir, run="long", sets=["cutoff_len=1024"]))
    # empty training set after filtering
    empty = write_jsonl(tmp_path / "empty.jsonl", ["   "])
    with pytest.raises(ValueError, match="empty"):
        train(_opts(out_dir, tiny_dir, cache_dir, run="empty", sets=[f"train_files.el={empty}"]))
    # missing replay language for stage 2
    with pytest.raises(TrainingInputError, match="replay languages present"):
        train(_opts(out_dir, other, cache_dir, stage=2, run="s2-zh", sets=["replay_languages=[zh]"],
                    init_adapter=str(out_dir / "train" / "wide-s1" / "adapter")))
    for run in ("s2-none", "four", "long", "empty", "s2-wrong", "s2-zh", "tiny-s1"):
        assert _no_training_happened(out_dir, run), run


def test_cli_train_and_errors(out_dir, tiny_dir, cache_dir, capsys, monkeypatch):
    from neuronmoe.cli import main

    monkeypatch.setenv("NEURONMOE_CACHE", str(cache_dir.parent / "nm-cache"))
    monkeypatch.setenv("MAX_STEPS", "2")  # env layer
    base = ["train", "--stage", "1", "--model", str(tiny_dir), "--output-dir", str(out_dir), "--allocation", "tiny",
            "--profile", "cpu", "--cutoff-len", "32", "--batch-size", "2", "--report-to", "tensorboard",
            "--set", "heldout_dense=false", "--set", "heldout_max_tokens=128", "--set", "bf16=false",
            "--max-samples", "20"]
    assert main(base) == 0
    run = out_dir / "train" / "tiny-s1"
    assert json.loads((run / "manifest.json").read_text())["result"]["global_step"] == 2
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))  # --report-to tensorboard
    assert main(base) == 2  # exists, no --resume/--overwrite
    assert "--resume" in capsys.readouterr().err
    assert main(base + ["--resume"]) == 0 and "already complete" in capsys.readouterr().out
    assert main(base + ["--overwrite", "--max-steps", "1"]) == 0
    assert json.loads((run / "manifest.json").read_text())["result"]["global_step"] == 1
