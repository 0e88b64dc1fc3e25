"""Config loading: every conf/ file composes, merge order, one-line errors, CLI, round trip."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

import vau
from vau.families import FAMILIES
from vau.cli import main
from vau.config import GROUPS, ConfigError, compose, conf_dir, list_experiments, save_config, to_container, to_yaml
from vau.lit.strategies import load_deepspeed_json

REPO_CONF = Path(vau.__file__).resolve().parents[1] / "conf"
BASE = "experiment=tiny/lm"

EXPERIMENTS = list_experiments(REPO_CONF)
GROUP_FILES = sorted(
    (group, p.stem) for group in GROUPS for p in (REPO_CONF / group).glob("*.yaml")
)
DS_JSON = sorted(str(p.relative_to(REPO_CONF)) for p in (REPO_CONF / "trainer" / "deepspeed").glob("*.json"))
DS_TRAINER_FILES = sorted(
    p.stem for p in (REPO_CONF / "trainer").glob("*.yaml")
    if (yaml.safe_load(p.read_text()) or {}).get("strategy") == "deepspeed"
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("VAU_RUNS", "VAU_DATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VAU_CONF_DIR", str(REPO_CONF))


def _leaves(d: dict, prefix: str = ""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from _leaves(v, key + ".")
        else:
            yield key, v


def _select(cfg, key):
    return OmegaConf.select(cfg, key, throw_on_missing=True)


# --------------------------------------------------------------------------- every file loads


def test_discovered_file_lists_are_not_empty():
    assert conf_dir() == REPO_CONF
    assert "tiny/lm" in EXPERIMENTS and len(EXPERIMENTS) >= 2
    assert len(GROUP_FILES) >= 5
    assert {g for g, _ in GROUP_FILES} >= {"model", "data", "trainer", "logger"}
    assert len(DS_JSON) >= 1
    assert len(DS_TRAINER_FILES) >= 1
    # list_experiments sees every experiment yaml on disk
    on_disk = sorted(str(p.relative_to(REPO_CONF / "experiment").with_suffix(""))
                     for p in (REPO_CONF / "experiment").rglob("*.yaml"))
    assert EXPERIMENTS == on_disk


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(name):
    cfg = compose([f"experiment={name}"])
    assert cfg.run.experiment == name
    assert cfg.model.family in FAMILIES
    # the experiment's own keys (minus defaults) land in the config
    body = yaml.safe_load((REPO_CONF / "experiment" / f"{name}.yaml").read_text())
    body.pop("defaults", None)
    # The experiment's values, resolved in the composed config's context (`${data.root}`, `${oc.env:...}`).
    resolved = OmegaConf.merge(OmegaConf.create(to_container(cfg)), OmegaConf.create(body))
    for key, _ in _leaves(body):
        got, want = _select(cfg, key), _select(resolved, key)
        got = to_container(got) if OmegaConf.is_config(got) else got
        want = OmegaConf.to_container(want, resolve=True) if OmegaConf.is_config(want) else want
        assert _matches(got, want), key
    assert isinstance(to_container(cfg), dict)


def _matches(actual, want) -> bool:
    """``want`` is contained in ``actual`` (list items are structured: schema defaults fill them)."""
    if isinstance(want, dict):
        return isinstance(actual, dict) and all(k in actual and _matches(actual[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(actual, list) and len(actual) == len(want) and all(map(_matches, actual, want))
    return actual == want


def _base_experiment(group: str, name: str) -> str:
    """An experiment that already uses this group file (so its family's schema fits), else tiny/lm."""
    for exp in EXPERIMENTS:
        defaults = yaml.safe_load((REPO_CONF / "experiment" / f"{exp}.yaml").read_text()).get("defaults", [])
        if {group: name} in defaults:
            return exp
    return "tiny/lm"


@pytest.mark.parametrize("group,name", GROUP_FILES, ids=[f"{g}={n}" for g, n in GROUP_FILES])
def test_every_group_file_composes(group, name):
    base = _base_experiment(group, name)
    cfg = compose([f"experiment={base}", f"{group}={name}"])
    exp = yaml.safe_load((REPO_CONF / "experiment" / f"{base}.yaml").read_text())
    exp.pop("defaults")
    # The experiment's values resolved in the composed config's context (`${data.root}`, `${oc.env:...}`).
    resolved = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(to_container(cfg)), exp), resolve=True)
    exp_keys = {key: _select(OmegaConf.create(resolved), key) for key, _ in _leaves(exp)}
    exp_keys = {k: to_container(v) if OmegaConf.is_config(v) else v for k, v in exp_keys.items()}
    raw = yaml.safe_load((REPO_CONF / group / f"{name}.yaml").read_text()) or {}
    # Resolved under its group key, so `${data.root}`-style interpolations find their target.
    # The schema's data.root stands in for `${data.root}` (the group files leave it to the schema).
    context = OmegaConf.merge({"data": {"root": cfg.data.root}}, {group: raw})
    expected = OmegaConf.to_container(context, resolve=True)[group]
    assert expected, f"{group}/{name}.yaml is empty"
    for key, value in _leaves(expected, f"{group}."):
        want = exp_keys.get(key, value)  # the experiment file wins over the group file
        assert _matches(to_container(_select(cfg, key)) if OmegaConf.is_config(_select(cfg, key))
                        else _select(cfg, key), want), key


@pytest.mark.parametrize("rel", DS_JSON)
def test_deepspeed_json_parses(rel):
    data = json.loads((REPO_CONF / rel).read_text())
    assert isinstance(data, dict)
    stage = data["zero_optimization"]["stage"]
    assert stage in (0, 1, 2, 3)
    m = re.search(r"zero(\d)", Path(rel).stem)
    assert m and int(m.group(1)) == stage


@pytest.mark.parametrize("name", DS_TRAINER_FILES)
def test_deepspeed_trainer_file_loads_json(name):
    cfg = compose([BASE, f"trainer={name}", "data.batch_size=3"])
    assert cfg.trainer.strategy == "deepspeed"
    ds = load_deepspeed_json(cfg, conf_dir())
    assert isinstance(ds, dict)
    stage = int(re.search(r"zero(\d)", name).group(1))
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["train_micro_batch_size_per_gpu"] == 3
    on_disk = json.loads((REPO_CONF / cfg.trainer.deepspeed.config).read_text())
    assert ds["zero_optimization"] == on_disk["zero_optimization"]


def test_deepspeed_json_missing_file_is_reported():
    cfg = compose([BASE, "trainer=deepspeed_zero2", "trainer.deepspeed.config=trainer/deepspeed/nope.json"])
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_deepspeed_json(cfg, conf_dir())
    cfg = compose([BASE])
    with pytest.raises(ValueError, match="trainer.deepspeed.config"):
        load_deepspeed_json(cfg, conf_dir())


# --------------------------------------------------------------------------- merge order


def test_merge_order_on_repo_conf():
    schema_only = compose([])
    assert schema_only.trainer.max_steps == -1
    assert schema_only.data.batch_size == 2
    assert schema_only.trainer.precision == "32-true"

    exp = compose([BASE])
    assert exp.trainer.max_steps == 40  # experiment > schema
    assert exp.data.batch_size == 4  # group data/tokens > schema
    assert exp.trainer.accelerator == "cpu"  # group trainer/cpu > schema

    cli = compose([BASE, "trainer.max_steps=7", "data.batch_size=16"])
    assert cli.trainer.max_steps == 7
    assert cli.data.batch_size == 16

    # a group chosen on the command line replaces the experiment's default pick ...
    ddp = compose([BASE, "trainer=ddp"])
    assert ddp.trainer.strategy == "ddp" and ddp.trainer.precision == "bf16-mixed"
    # ... but the experiment file still wins over the group file
    assert ddp.trainer.max_steps == 40


@pytest.fixture
def tmp_conf(tmp_path):
    root = tmp_path / "conf"
    (root / "experiment").mkdir(parents=True)
    (root / "trainer").mkdir()
    (root / "data").mkdir()
    (root / "trainer" / "t1.yaml").write_text(
        "max_steps: 20\nprecision: bf16-mixed\naccumulate_grad_batches: 3\n")
    (root / "trainer" / "t2.yaml").write_text("max_steps: 50\nprecision: 16-mixed\n")
    (root / "data" / "d.yaml").write_text("batch_size: 8\nseq_len: 16\n")
    (root / "experiment" / "e.yaml").write_text(
        "defaults:\n  - trainer: t1\n  - data: d\n"
        "trainer:\n  max_steps: 30\ndata:\n  batch_size: 6\n")
    return root


def test_merge_order_all_layers(tmp_conf):
    cfg = compose(["experiment=e"], conf_root=tmp_conf)
    assert cfg.trainer.num_nodes == 1  # schema default
    assert cfg.trainer.precision == "bf16-mixed"  # group > schema
    assert cfg.trainer.accumulate_grad_batches == 3  # group > schema
    assert cfg.data.seq_len == 16
    assert cfg.trainer.max_steps == 30  # experiment > group
    assert cfg.data.batch_size == 6  # experiment > group
    assert cfg.run.experiment == "e"

    cfg = compose(["trainer.max_steps=40", "experiment=e", "trainer.accumulate_grad_batches=5",
                   "data.batch_size=9", "data.batch_size=10"], conf_root=tmp_conf)
    assert cfg.trainer.max_steps == 40  # command line > experiment, wherever it stands
    assert cfg.trainer.accumulate_grad_batches == 5  # command line > group
    assert cfg.data.batch_size == 10  # the later override wins
    assert cfg.trainer.precision == "bf16-mixed"

    cfg = compose(["experiment=e", "trainer=t2"], conf_root=tmp_conf)
    assert cfg.trainer.precision == "16-mixed"  # the command-line pick replaces t1
    assert cfg.trainer.accumulate_grad_batches == 1  # nothing of t1 remains
    assert cfg.trainer.max_steps == 30  # experiment > group

    # the keyword experiment= works, and experiment= in overrides wins over it
    assert compose([], experiment="e", conf_root=tmp_conf).data.batch_size == 6


def test_error_names_the_source_file(tmp_conf):
    (tmp_conf / "trainer" / "bad.yaml").write_text("max_stepz: 3\n")
    with pytest.raises(ConfigError) as ei:
        compose(["experiment=e", "trainer=bad"], conf_root=tmp_conf)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "max_stepz" in msg and "bad.yaml" in msg and "max_steps" in msg

    (tmp_conf / "experiment" / "wrongtype.yaml").write_text("trainer:\n  max_steps: lots\n")
    with pytest.raises(ConfigError) as ei:
        compose(["experiment=wrongtype"], conf_root=tmp_conf)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "trainer.max_steps" in msg and "lots" in msg and "wrongtype.yaml" in msg

    (tmp_conf / "experiment" / "badgroup.yaml").write_text("defaults:\n  - optimizer: x\n")
    with pytest.raises(ConfigError, match="optimizer"):
        compose(["experiment=badgroup"], conf_root=tmp_conf)

    (tmp_conf / "experiment" / "broken.yaml").write_text("trainer: [unclosed\n")
    with pytest.raises(ConfigError) as ei:
        compose(["experiment=broken"], conf_root=tmp_conf)
    assert "\n" not in str(ei.value) and "broken.yaml" in str(ei.value)


# --------------------------------------------------------------------------- errors


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg.strip(), msg
    return msg


def test_unknown_key_suggests_close_match():
    with pytest.raises(ConfigError) as ei:
        compose([BASE, "trainer.max_stepz=3"])
    msg = _one_line(ei.value)
    assert "max_stepz" in msg
    assert re.search(r"did you mean.*\bmax_steps\b", msg)
    assert "command line" in msg


def test_wrong_type_names_key_value_and_type():
    with pytest.raises(ConfigError) as ei:
        compose([BASE, "trainer.max_steps=abc"])
    msg = _one_line(ei.value)
    assert "trainer.max_steps" in msg
    assert "abc" in msg
    assert re.search(r"int", msg, re.IGNORECASE)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([BASE, "model.llm.hidden_sise=3"], ["model.llm.hidden_sise", "hidden_size"]),
        ([BASE, "trainr.max_steps=3"], ["trainr", "trainer"]),
        ([BASE, "trainer=deepspeed_zero9"], ["deepspeed_zero9", "cpu", "ddp", "deepspeed_zero2"]),
        (["experiment=tiny/lmm"], ["tiny/lmm", "did you mean: tiny/lm"]),
        ([BASE, "model.family=nosuchfamily"], ["nosuchfamily", "lm"]),
    ],
    ids=["nested_key", "top_level_key", "group_file", "experiment", "family"],
)
def test_unknown_names_one_line(overrides, expected):
    with pytest.raises(ConfigError) as ei:
        compose(overrides)
    msg = _one_line(ei.value)
    for part in expected:
        assert part in msg, (part, msg)


def test_override_without_equals():
    with pytest.raises(ConfigError) as ei:
        compose([BASE, "trainer.max_steps"])
    assert "trainer.max_steps" in _one_line(ei.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        compose([], config_file=tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- CLI


def test_cli_unknown_key_one_stderr_line(capsys):
    rc = main(["config", "show", BASE, "trainer.max_stepz=3"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "max_stepz" in lines[0] and "max_steps" in lines[0]


def test_cli_subprocess_unknown_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("VAU_RUNS", "VAU_DATA")}
    env["VAU_CONF_DIR"] = str(REPO_CONF)
    proc = subprocess.run(
        [sys.executable, "-m", "vau", "config", "show", BASE, "trainer.max_stepz=3"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "max_stepz" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("overrides", [[BASE], [BASE, "trainer=ddp", "optim.lr=0.5"], ["experiment=tiny/lm_lora"]])
def test_cli_show_prints_the_composed_config(capsys, overrides):
    assert main(["config", "show", *overrides]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert yaml.safe_load(out) == to_container(compose(overrides))


def test_cli_show_saved_config_overrides_last(capsys, tmp_path):
    path = save_config(compose([BASE, "optim.lr=0.25"]), tmp_path / "config.yaml")
    assert main(["config", "show", "trainer.max_steps=3", "--config", str(path)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["optim"]["lr"] == 0.25
    assert shown["trainer"]["max_steps"] == 3


def test_cli_show_saved_config_then_overrides(capsys, tmp_path):
    # The documented form `vau config show --config FILE key=value` (as for `vau train`).
    path = save_config(compose([BASE, "optim.lr=0.25"]), tmp_path / "config.yaml")
    assert main(["config", "show", "--config", str(path), "trainer.max_steps=3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["optim"]["lr"] == 0.25
    assert shown["trainer"]["max_steps"] == 3


def test_cli_list(capsys):
    assert main(["config", "list"]) == 0
    assert capsys.readouterr().out.split() == EXPERIMENTS


# --------------------------------------------------------------------------- env interpolation


def test_run_dir_from_env(monkeypatch, tmp_path):
    assert compose([BASE]).run.dir == "runs/tiny_lm"
    monkeypatch.setenv("VAU_RUNS", str(tmp_path / "myruns"))
    cfg = compose([BASE])
    assert cfg.run.dir == f"{tmp_path / 'myruns'}/tiny_lm"
    assert compose([BASE, "run.name=other"]).run.dir == f"{tmp_path / 'myruns'}/other"


def test_data_root_from_env(monkeypatch, tmp_path):
    assert compose([BASE]).data.root == "data"
    assert compose([]).data.root == "data"
    monkeypatch.setenv("VAU_DATA", str(tmp_path / "d"))
    assert compose([BASE]).data.root == str(tmp_path / "d")  # via conf/data/tokens.yaml
    assert compose([]).data.root == str(tmp_path / "d")  # via the schema default
    # nothing unresolved is left in the container
    assert "${" not in to_yaml(compose([BASE]))


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("overrides", [[f"experiment={e}"] for e in EXPERIMENTS]
                         + [[BASE, "trainer=deepspeed_zero3", "optim.lr=0.5", "trainer.devices=[0,1]"]])
def test_round_trip(tmp_path, monkeypatch, overrides):
    monkeypatch.setenv("VAU_RUNS", str(tmp_path / "runs"))
    cfg = compose(overrides)
    path = save_config(cfg, tmp_path / "sub" / "config.yaml")
    assert path == tmp_path / "sub" / "config.yaml"
    assert sorted(os.listdir(path.parent)) == ["config.yaml"]  # no temp file left
    monkeypatch.setenv("VAU_RUNS", str(tmp_path / "elsewhere"))  # saved values are resolved
    again = compose([], config_file=path)
    assert to_container(again) == to_container(cfg)


def test_lr_mult_can_be_set(tmp_path, tmp_conf):
    # optim.lr_mult is a Dict[str, float] ("e.g. vision_tower: 0.2"): its keys are free.
    cfg = compose([BASE, "optim.lr_mult.llm=0.5"])
    assert dict(cfg.optim.lr_mult) == {"llm": 0.5}
    (tmp_conf / "experiment" / "mult.yaml").write_text("optim:\n  lr_mult:\n    vision_tower: 0.2\n")
    cfg = compose(["experiment=mult"], conf_root=tmp_conf)
    assert dict(cfg.optim.lr_mult) == {"vision_tower": 0.2}
    path = save_config(cfg, tmp_path / "config.yaml")
    assert to_container(compose([], config_file=path)) == to_container(cfg)


def test_overrides_on_saved_config(tmp_path):
    path = save_config(compose([BASE]), tmp_path / "config.yaml")
    cfg = compose(["trainer.max_steps=7", "run.name=again"], config_file=path)
    assert cfg.trainer.max_steps == 7
    assert cfg.run.name == "again"
    assert cfg.data.batch_size == 4  # the rest comes from the file
    cfg = compose(["trainer=ddp"], config_file=path)  # a group file on top of a saved config
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.max_steps == 40
    with pytest.raises(ConfigError, match="max_stepz"):
        compose(["trainer.max_stepz=1"], config_file=path)


def test_config_is_read_only():
    cfg = compose([BASE])
    with pytest.raises(Exception):
        cfg.trainer.max_steps = 3
    with pytest.raises(Exception):
        cfg.trainer["max_steps"] = 3
    with pytest.raises(Exception):
        cfg.trainer.new_key = 1
    with pytest.raises(Exception):
        cfg.run = {}
    assert cfg.trainer.max_steps == 40
    assert OmegaConf.is_readonly(cfg)


# conf/infer and conf/eval hold the anomshield family's tool files (ECVA).
TOOL_SCHEMAS = {"infer": ("AnomShieldInferConfig", ["model=runs/x", "out=runs/x/infer"]),
                "eval": ("AnomShieldEvalConfig", ["predictions=[runs/x/infer]", "out=runs/eval"])}
TOOL_FILES = sorted((group, p.stem) for group in TOOL_SCHEMAS for p in (REPO_CONF / group).glob("*.yaml"))


def _file_leaves(group: str, name: str) -> dict:
    """Leaves of ``conf/<group>/<name>.yaml`` after its ``defaults:`` files (later files win)."""
    raw = yaml.safe_load((REPO_CONF / group / f"{name}.yaml").read_text()) or {}
    leaves: dict = {}
    for parent in raw.pop("defaults", []):
        leaves.update(_file_leaves(group, parent))
    leaves.update(_leaves(raw))
    return leaves


@pytest.mark.parametrize("group,name", TOOL_FILES, ids=[f"{g}/{n}" for g, n in TOOL_FILES])
def test_every_tool_file_composes(group, name):
    import vau.families.anomshield.tools as schemas
    from vau.config import compose_tool

    schema, required = TOOL_SCHEMAS[group]
    cfg = compose_tool(getattr(schemas, schema), group, name, required)
    leaves = _file_leaves(group, name)
    assert leaves, f"{group}/{name}.yaml is empty"
    for key, value in leaves.items():
        got = _select(cfg, key)
        assert _matches(to_container(got) if OmegaConf.is_config(got) else got, value), key


def test_every_conf_file_is_loaded_by_a_test():
    covered = {f"{g}/{n}.yaml" for g, n in GROUP_FILES + TOOL_FILES}
    covered |= {f"experiment/{e}.yaml" for e in EXPERIMENTS}
    covered |= {f"sweep/{p.name}" for p in (REPO_CONF / "sweep").glob("*.yaml")}  # tests/integration/test_sweep.py
    every = {str(p.relative_to(REPO_CONF)) for p in REPO_CONF.rglob("*.yaml")}
    assert every - covered == set()


def test_registry_choices_are_spelled_kind_and_old_keys_still_load(tmp_path, caplog):
    """One key name for a registry choice (``kind``); configs that say ``name``/``backend`` keep loading."""
    import logging

    from vau.config import compose_tool
    from vau.families.anomshield.tools import AnomShieldEvalConfig, AnomShieldInferConfig

    with caplog.at_level(logging.WARNING, logger="vau"):
        cfg = compose(["experiment=tiny/anomshield_stage1", "model.connector.name=mlp", "optim.name=sgd"])
    assert (cfg.model.connector.kind, cfg.optim.kind) == ("mlp", "sgd")
    assert "command line: optim.name is spelled optim.kind now" in caplog.text
    assert "name" not in cfg.model.connector and "name" not in cfg.optim

    # A config saved before the rename (its connector and optimizer under `name`) composes the same.
    old = to_container(compose(["experiment=tiny/anomshield_stage1"]))
    old["optim"]["name"] = old["optim"].pop("kind")
    old["model"]["connector"]["name"] = old["model"]["connector"].pop("kind")
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(old))
    assert to_container(compose([], config_file=saved)) == to_container(compose(["experiment=tiny/anomshield_stage1"]))

    with pytest.raises(ConfigError, match="optim.name and optim.kind both set .* keep only optim.kind"):
        compose(["experiment=tiny/lm", "optim.name=sgd", "optim.kind=adamw"])

    infer = compose_tool(AnomShieldInferConfig, "infer", "tiny", ["model=m", "out=o", "devices=2",
                                                                  "hard_prompt.judge.backend=http"])
    assert infer.trainer.devices == 2 and infer.hard_prompt.judge.kind == "http"
    evalc = compose_tool(AnomShieldEvalConfig, "eval", "ecva", ["out=o", "anomeval.judge.backend=http"])
    assert evalc.anomeval.judge.kind == "http"


def test_global_batch_sets_the_accumulation_for_the_allocation():
    from vau.lit.trainer import accumulation

    def acc(*overrides):
        return accumulation(compose(["experiment=anomshield/stage1", *overrides]))

    assert acc("trainer.devices=8") == 1  # ECVA's 32 = 4 x 8 GPUs
    assert acc("trainer.devices=4") == 2 and acc("trainer.devices=2", "trainer.num_nodes=2") == 2
    assert acc("trainer.devices=[0,1]") == 4 and acc("trainer.devices=1", "data.batch_size=8") == 4
    assert acc("trainer.global_batch_size=null", "trainer.accumulate_grad_batches=3") == 3
    with pytest.raises(ConfigError, match=r"global_batch_size=32 is not a multiple of .* = 12"):
        acc("trainer.devices=3")


def test_an_experiment_can_start_from_another(tmp_path):
    from vau.config import config_diff

    base, ecva = compose(["experiment=anomshield/stage3"]), compose(["experiment=anomshield/stage3_ecva"])
    changed = {k for k, _, _ in config_diff(base, ecva)}
    assert changed == {"run.name", "run.dir", "run.experiment", "data.train"}
    assert [s.name for s in ecva.data.train] == [s.name for s in base.data.train] + ["ecva"]
    assert "ecva" not in [s.name for s in base.data.train]  # the paper's stage 3 trains on no ECVA data

    root = tmp_path / "conf"
    (root / "experiment").mkdir(parents=True)
    shutil.copytree(REPO_CONF / "model", root / "model")
    (root / "experiment" / "a.yaml").write_text("defaults:\n  - experiment: b\n")
    (root / "experiment" / "b.yaml").write_text("defaults:\n  - experiment: a\n")
    with pytest.raises(ConfigError, match="defaults loop through a -> b -> a"):
        compose(["experiment=a"], conf_root=root)
    (root / "experiment" / "c.yaml").write_text("defaults:\n  - experiment: nope\n")
    with pytest.raises(ConfigError, match=r"experiment=nope \(the base of c\): no file"):
        compose(["experiment=c"], conf_root=root)
