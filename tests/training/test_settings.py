"""Profiles carry the paper's defaults; env < flags < --set; bad fields fail early with one line naming the
flag, variable or --set key; the settings round-trip through the command line."""
from __future__ import annotations

import pytest

from neuronmoe.errors import ConfigError
from neuronmoe.settings import load_profile, parse_sets
from neuronmoe.training.settings import TrainSettings


def resolve(stage, profile, config=None, flags=None, sets=None, environ=None, world_size=None):
    """(the profile's settings as a dict, their record) as ``neuronmoe train`` resolves them."""
    s = TrainSettings.resolve(dict(flags or {}), environ=environ, config_file=config, sets=sets, world_size=world_size,
                              stage=stage, profile=profile)
    return s.config(), s.record()


def test_paper_profile_is_table_7():
    s1, _ = resolve(1, "paper", environ={})
    assert (s1["optim"], s1["learning_rate"], s1["adam_beta1"], s1["adam_beta2"], s1["adam_epsilon"]) == (
        "adamw_torch", 1e-4, 0.9, 0.999, 1e-8)
    assert (s1["weight_decay"], s1["lr_scheduler_type"], s1["warmup_steps"]) == (0.0, "cosine", 0)
    assert (s1["per_device_train_batch_size"], s1["gradient_accumulation_steps"], s1["max_steps"]) == (32, 1, 15000)
    assert s1["effective_batch_size"] == 32 and (s1["aux_loss_form"], s1["lpr_input"]) == ("hf", "probs")
    assert (s1["max_grad_norm"], s1["bf16"], s1["seed"], s1["top_k"], s1["aux_loss_coef"]) == (1.0, True, 42, 2, 0.01)
    assert (s1["cutoff_len"], s1["train_mode"], s1["lpr_loss_coef"]) == (1024, "experts", 0.0)
    s2, _ = resolve(2, "paper", environ={})
    assert (s2["learning_rate"], s2["lpr_loss_coef"], s2["max_steps"], s2["num_train_epochs"]) == (5e-5, 0.1, -1, 1)
    assert s2["replay_languages"] == ["en", "zh", "es"] and s2["replay_max_samples"] == 50000
    # MoE-LPR's stage 2 trains with LM + LPR only
    assert (s2["cutoff_len"], s2["train_mode"], s2["aux_loss_coef"]) == (512, "routers", 0.0)


def test_cpu_profile_inherits_and_shrinks():
    cpu = load_profile("train_cpu_stage1")
    paper = load_profile("train_stage1")
    assert set(cpu) == set(paper)
    assert cpu["cutoff_len"] < paper["cutoff_len"] and cpu["max_steps"] < paper["max_steps"]
    assert cpu["top_k"] == paper["top_k"] and cpu["aux_loss_coef"] == paper["aux_loss_coef"]
    cpu2, _ = resolve(2, "cpu", environ={})
    assert cpu2["train_mode"] == "routers" and cpu2["lpr_loss_coef"] == 0.1


@pytest.mark.parametrize("world,per_device,accum", [(1, 32, 1), (2, 16, 1), (4, 8, 1), (8, 4, 1), (16, 2, 1), (32, 1, 1)])
def test_effective_batch_is_derived_from_the_world_size(world, per_device, accum):
    cfg, prov = resolve(1, "paper", environ={"WORLD_SIZE": str(world)})
    assert (cfg["per_device_train_batch_size"], cfg["gradient_accumulation_steps"]) == (per_device, accum)
    b = prov["batch"]
    assert b["world_size"] == world and b["effective_batch_size"] == 32 and not b["override"]
    assert per_device * accum * world == 32


def test_effective_batch_per_device_cap_accumulates():
    cfg, prov = resolve(1, "paper", environ={}, sets=["max_per_device_batch_size=16"], world_size=1)
    assert (cfg["per_device_train_batch_size"], cfg["gradient_accumulation_steps"]) == (16, 2)
    cfg, _ = resolve(1, "paper", environ={}, sets=["max_per_device_batch_size=3"], world_size=2)
    assert (cfg["per_device_train_batch_size"], cfg["gradient_accumulation_steps"]) == (2, 8)  # largest divisor of 16 <= 3
    # one side explicit: the other is derived so that the contract holds
    cfg, prov = resolve(1, "paper", environ={"TRAIN_BATCH_SIZE": "2"}, world_size=4)
    assert (cfg["per_device_train_batch_size"], cfg["gradient_accumulation_steps"]) == (2, 4) and not prov["batch"]["override"]
    cfg, _ = resolve(1, "paper", environ={}, flags={"gradient_accumulation_steps": 2}, world_size=8)
    assert (cfg["per_device_train_batch_size"], cfg["gradient_accumulation_steps"]) == (2, 2)


def test_explicit_override_is_allowed_printed_and_recorded(caplog):
    """The old reproduce_paper bug (32 per device on 8 GPUs = 256) needs both sides explicit, and is flagged."""
    with caplog.at_level("WARNING", logger="neuronmoe.training"):
        cfg, prov = resolve(1, "paper", environ={}, flags={"per_device_train_batch_size": 32,
                                                           "gradient_accumulation_steps": 1}, world_size=8)
    b = prov["batch"]
    assert b["override"] and b["effective_batch_size"] == 256 and b["contract"] == 32
    assert "effective batch 256" in caplog.text and "overrides the profile's 32" in caplog.text


@pytest.mark.parametrize("kw, match", [
    (dict(world_size=3), "effective batch 32 cannot be split over 3 processes"),
    (dict(world_size=2, environ={"TRAIN_BATCH_SIZE": "5"}), "not a multiple of per-device batch 5"),
    (dict(world_size=8, flags={"gradient_accumulation_steps": 3}), "not a multiple of gradient accumulation 3"),
    (dict(world_size=1, sets=["per_device_train_batch_size=many"]), "int >= 1 or auto"),
    (dict(world_size=1, sets=["lpr_input=softmax"]), "--set lpr_input: 'softmax' is not one of probs, logits"),
    (dict(world_size=1, sets=["aux_loss_form=switch"]), "--set aux_loss_form: 'switch' is not one of hf, normalized"),
])
def test_bad_batch_and_loss_settings_fail_early(kw, match):
    from neuronmoe.training.settings import derive_batch

    with pytest.raises(ValueError, match="effective_batch_size is null"):
        derive_batch(None, 1)
    assert derive_batch(None, 2, 4)["effective_batch_size"] == 8  # no contract: as given
    kw.setdefault("environ", {})
    with pytest.raises(ValueError, match=match):
        resolve(1, "paper", **kw)


def test_precedence_env_flags_set(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("learning_rate: 2.0e-4\nsave_steps: 7\n")
    env = {"LEARNING_RATE": "3e-4", "CUTOFF_LEN": "256", "TARGET_LANGS": "el,tr", "BF16": "0"}
    cfg, prov = resolve(1, "paper", str(user), flags={"cutoff_len": "128", "max_steps": None},
                        sets=["max_steps=9", "train_files.el=hf:org/name:el", "trainer_extra.warmup_ratio=0.1"],
                        environ=env)
    assert cfg["save_steps"] == 7  # user file
    assert cfg["learning_rate"] == 3e-4  # env over file
    assert cfg["cutoff_len"] == 128  # flag over env
    assert cfg["max_steps"] == 9 and cfg["train_files"] == {"el": "hf:org/name:el"}
    assert cfg["trainer_extra"] == {"warmup_ratio": 0.1}
    assert cfg["languages"] == ["el", "tr"] and cfg["bf16"] is False
    assert prov["sources"]["learning_rate"] == "env LEARNING_RATE" and prov["sources"]["save_steps"] == str(user)
    assert prov["sources"]["cutoff_len"] == "--cutoff-len" and prov["sources"]["max_steps"] == "--set max_steps"


@pytest.mark.parametrize("sets, match", [
    (["no_such_key=1"], "unknown setting 'no_such_key'"),
    (["cutoff_len=abc"], "cutoff_len"),
    (["cutoff_len=0"], "cutoff_len"),
    (["languages=[]"], "languages"),
    (["languages=[xx]"], "xx"),
    (["replay_languages=[el]"], "both a new and a replay"),
    (["bf16=maybe"], "bf16"),
    (["max_samples=0"], "max_samples"),
    (["max_tokens=lots"], "max_tokens"),
    (["max_tokens=0"], "max_tokens"),
])
def test_bad_values_fail_early(sets, match):
    with pytest.raises(ValueError, match=match):
        resolve(1, "paper", sets=sets, environ={})


def test_bad_env_and_set_syntax():
    with pytest.raises(ValueError, match="MAX_STEPS"):
        resolve(1, "paper", environ={"MAX_STEPS": "many"})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_sets(["justakey"])
    with pytest.raises(ValueError, match="replay_languages"):
        resolve(2, "paper", sets=["replay_languages=[]"], environ={})


def test_bf16_auto_follows_native_support(monkeypatch):
    from neuronmoe.utils import device as dev

    for native in (True, False):
        monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda native=native: native)
        cfg, _ = resolve(1, "cpu", environ={})
        assert cfg["bf16"] is native  # the CPU profile says bf16: auto
        cfg, _ = resolve(1, "cpu", environ={"BF16": "auto"}, sets=["bf16=true"])
        assert cfg["bf16"] is True  # an explicit value wins
    with pytest.raises(ValueError, match="bf16 must be true, false or auto"):
        resolve(1, "cpu", environ={}, sets=["bf16=sometimes"])


def test_token_budget_setting_from_profile_env_and_flag():
    assert resolve(1, "paper", environ={})[0]["max_tokens"] == "auto"
    assert resolve(1, "cpu", environ={})[0]["max_tokens"] == "all"
    assert resolve(2, "paper", environ={})[0]["max_tokens"] == "all"
    cfg, prov = resolve(1, "paper", environ={"TRAIN_MAX_TOKENS": "5e8"})
    assert cfg["max_tokens"] == 500_000_000 and prov["sources"]["max_tokens"] == "env TRAIN_MAX_TOKENS"
    assert resolve(1, "paper", flags={"max_tokens": "all"}, environ={"TRAIN_MAX_TOKENS": "5e8"})[0]["max_tokens"] == "all"


@pytest.mark.parametrize("how, value, named", [
    ("flag", "inf", "--learning-rate"), ("flag", "nan", "--learning-rate"), ("flag", "0", "--learning-rate"),
    ("flag", "-1e-4", "--learning-rate"), ("env", "inf", "env LEARNING_RATE"), ("env", "-3", "env LEARNING_RATE"),
    ("set", ".inf", "--set learning_rate"), ("set", ".nan", "--set learning_rate"), ("set", "0.0", "--set learning_rate"),
])
def test_learning_rate_must_be_finite_and_positive(how, value, named):
    """A non-finite or non-positive learning rate is one error line naming where it came from (issue 24 item 3)."""
    kw = {"flag": dict(flags={"learning_rate": value}), "env": dict(environ={"LEARNING_RATE": value}),
          "set": dict(sets=[f"learning_rate={value}"])}[how]
    with pytest.raises(ConfigError) as e:
        resolve(1, "cpu", **kw)
    line = str(e.value)
    assert line.startswith(f"{named}:") and "\n" not in line
    assert ("finite" in line) or ("out of range (0, inf)" in line), line


@pytest.mark.parametrize("key, value, flag", [
    ("aux_loss_coef", "-0.01", "--aux-loss-coef"), ("aux_loss_coef", "inf", "--aux-loss-coef"),
    ("lpr_loss_coef", "nan", "--lpr-loss-coef"), ("lpr_loss_coef", "-1", "--lpr-loss-coef"),
    ("top_k", "0", "--top-k"), ("cutoff_len", "1", "--cutoff-len"), ("logging_steps", "0", "--logging-steps"),
    ("save_steps", "-5", "--save-steps"), ("max_samples", "0", "--max-samples"),
    ("effective_batch_size", "0", "--effective-batch-size"), ("max_steps", "-2", "--max-steps"),
    ("max_steps", "0", "--max-steps"), ("num_train_epochs", "inf", "--epochs"),
    ("per_device_train_batch_size", "0", "--batch-size"), ("gradient_accumulation_steps", "-1", "--grad-accum"),
])
def test_out_of_range_flags_are_one_line_naming_the_flag(key, value, flag):
    with pytest.raises(ConfigError, match=rf"^{flag}: "):
        resolve(1, "cpu", flags={key: value})


@pytest.mark.parametrize("key, value", [("weight_decay", "-0.1"), ("max_grad_norm", ".inf"), ("adam_beta1", "1.0"),
                                        ("warmup_steps", "-1"), ("heldout_max_tokens", "0"), ("seed", "-1")])
def test_out_of_range_set_keys_are_named(key, value):
    with pytest.raises(ConfigError, match=rf"^--set {key}: "):
        resolve(1, "cpu", sets=[f"{key}={value}"])


def test_max_steps_minus_one_means_epochs():
    cfg, _ = resolve(1, "cpu", flags={"max_steps": "-1", "num_train_epochs": "2"})
    assert (cfg["max_steps"], cfg["num_train_epochs"]) == (-1, 2)
    with pytest.raises(ConfigError, match="^--epochs: must be > 0 when max_steps is -1"):
        resolve(1, "cpu", flags={"max_steps": "-1", "num_train_epochs": "0"})


def test_settings_round_trip_through_the_command_line(tmp_path):
    """to_argv() of resolved settings, parsed by `neuronmoe train`'s own parser, resolves to the same settings."""
    from neuronmoe.cli import build_parser

    env = {"TRAIN_SEED": "7", "NEW_LANGS": "tr"}
    s = TrainSettings.resolve({"learning_rate": "3e-4", "languages": "el,hu", "per_device_train_batch_size": "2",
                               "deepspeed": "zero2", "max_tokens": "5e8"}, environ=env,
                              sets=["train_files.el=hf:org/name:el", "warmup_steps=5", "bf16=false"],
                              stage=2, profile="cpu", allocation="layermoe", run_name="x-s2", overwrite=True,
                              output_dir=str(tmp_path), world_size=2)
    argv = s.to_argv()
    assert argv[:2] != ["train"] and "--learning-rate" in argv and "--overwrite" in argv and "--run-name" in argv
    args = build_parser().parse_args(["train", *argv])
    back = TrainSettings.resolve(args, environ=env, world_size=2)
    assert back.to_dict() == s.to_dict() and back.record()["batch"] == s.record()["batch"]
    # every field, explicitly: the whole resolved state goes through the command line
    full = TrainSettings.resolve(build_parser().parse_args(["train", *s.to_argv([f.name for f, _, _ in s.fields()])]),
                                 environ={}, world_size=2)
    assert full.to_dict() == s.to_dict()
    assert (s.stage, s.languages, s.replay_languages, s.seed, s.max_tokens) == (2, ["el", "hu"], ["en"], 7, 500_000_000)


def test_stage_and_profile_choose_the_shipped_yaml():
    assert TrainSettings.resolve(environ={"STAGE": "2", "TRAIN_PROFILE": "cpu"}).yaml_profile == "train_cpu_stage2"
    assert TrainSettings.resolve(environ={}, stage=1, profile="paper").yaml_profile == "train_stage1"
    with pytest.raises(ConfigError, match="^--stage: required"):
        TrainSettings.resolve(environ={})
    with pytest.raises(ConfigError, match="^env STAGE: 3 is not one of 1, 2"):
        TrainSettings.resolve(environ={"STAGE": "3"})
    with pytest.raises(ConfigError, match="^--run-name '..'"):
        TrainSettings.resolve(environ={}, stage=1, profile="cpu", run_name="..")
    with pytest.raises(ConfigError, match="--resume and --overwrite exclude each other"):
        TrainSettings.resolve(environ={"RESUME": "1"}, stage=1, profile="cpu", overwrite=True)
