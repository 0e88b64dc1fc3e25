"""Registry: lookups, helpful unknown-name errors, duplicate registration."""

from __future__ import annotations

import json

import pytest

from vau.registry import Registry, import_object


def _reg():
    r: Registry[int] = Registry("widget")
    r.register("alpha", 1)

    @r.register("beta")
    def beta():
        return 2

    r.register("gamma_ray", 3)
    return r


def test_get_and_names():
    r = _reg()
    assert r.get("alpha") == 1
    assert r.get("beta")() == 2
    assert r.names() == ["alpha", "beta", "gamma_ray"]
    assert list(r) == ["alpha", "beta", "gamma_ray"]
    assert "alpha" in r and "delta" not in r


def test_decorator_returns_the_object():
    r = Registry("thing")

    @r.register("f")
    def f():
        return 42

    assert f() == 42 and r.get("f") is f


def test_unknown_name_lists_valid_and_close_match():
    r = _reg()
    with pytest.raises(KeyError) as ei:
        r.get("alpah")
    msg = ei.value.args[0]
    assert "widget" in msg and "'alpah'" in msg
    assert "valid: alpha, beta, gamma_ray" in msg
    assert "did you mean alpha" in msg


def test_unknown_name_without_close_match():
    r = _reg()
    with pytest.raises(KeyError) as ei:
        r.get("zzzzzzzz")
    msg = ei.value.args[0]
    assert "valid: alpha, beta, gamma_ray" in msg
    assert "did you mean" not in msg


def test_duplicate_registration_raises():
    r = _reg()
    with pytest.raises(KeyError, match="twice"):
        r.register("alpha", 99)
    with pytest.raises(KeyError, match="twice"):
        r.register("beta")(lambda: 0)
    assert r.get("alpha") == 1  # the first entry is kept


def test_import_object():
    assert import_object("os.path:join") is __import__("os").path.join
    with pytest.raises(AttributeError):
        import_object("os.path:no_such_thing")


def test_project_registries():
    from vau.cli import COMMANDS
    from vau.families.lm.config import LMRunConfig, TextShardDataConfig, TokenDataConfig
    from vau.families import FAMILIES
    from vau.lit.optim import OPTIMIZERS, SCHEDULERS
    from vau.lit.strategies import STRATEGIES

    lm = FAMILIES.get("lm")
    assert issubclass(lm.config_class(), LMRunConfig)
    assert lm.config_class() is lm.config_class("tokens")  # one class per (family, pipeline)
    data_types = {p: dict((f.name, f.type) for f in __import__("dataclasses").fields(lm.config_class(p)))["data"]
                  for p in ("tokens", "text")}
    assert data_types == {"tokens": TokenDataConfig, "text": TextShardDataConfig}
    assert FAMILIES.get("lm_text").config_class() is lm.config_class("text")  # the old spelling
    assert {"adamw", "sgd"} <= set(OPTIMIZERS.names())
    assert {"constant", "cosine", "linear"} <= set(SCHEDULERS.names())
    assert {"auto", "ddp", "deepspeed"} <= set(STRATEGIES.names())
    assert {"train", "config"} <= set(COMMANDS.names())
    with pytest.raises(KeyError, match="deepspeed"):
        STRATEGIES.get("deepsped")


def test_a_family_outside_vau_is_used_by_module_path(tmp_path, monkeypatch):
    from vau.config import compose
    from vau.errors import ConfigError
    from vau.families import FAMILIES, get_family

    pkg = tmp_path / "extfam"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from vau.families import Family, Pipeline\n"
        "FAMILY = Family(config='vau.families.lm.config:LMRunConfig', task='vau.families.lm.task:LMTask',\n"
        "                data={'tokens': Pipeline('vau.families.lm.config:TokenDataConfig',\n"
        "                                         'vau.families.lm.data:TokenDataModule')})\n")
    (tmp_path / "notfam.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get_family("extfam").task.endswith(":LMTask") and "extfam" not in FAMILIES
    cfg = compose(["model.family=extfam", "data.num_train=8"])
    assert (cfg.model.family, cfg.data.pipeline, cfg.data.num_train) == ("extfam", "tokens", 8)
    with pytest.raises(ConfigError, match=r"model.family='anomshiled': unknown model family .*did you mean anomshield"):
        compose(["model.family=anomshiled"])
    with pytest.raises(ConfigError, match="module notfam has no FAMILY"):
        compose(["model.family=notfam"])
    with pytest.raises(ConfigError, match=r"data.pipeline='shards': not a pipeline of this family \(valid: tokens, text\)"):
        compose(["model.family=lm", "data.pipeline=shards"])


def test_tool_conf_names_are_key_value_and_config_takes_a_file(tmp_path, caplog):
    from vau.config import compose_tool_args
    from vau.errors import ConfigError
    from vau.families.anomshield.tools import AnomShieldInferConfig as InferConfig

    base = ["model=m", "out=o"]
    tiny = compose_tool_args(InferConfig, "infer", None, ["infer=tiny", *base])
    assert tiny.trainer.precision == "32-true" and tiny.trainer.accelerator == "cpu"  # conf/infer/tiny.yaml
    assert compose_tool_args(InferConfig, "infer", None, base, default="ecva").trainer.precision == "bf16-true"
    own = tmp_path / "mine.yaml"
    own.write_text("defaults: []\nprecision: 16-mixed\nbatch_size: 3\n")  # the old top-level spelling
    mine = compose_tool_args(InferConfig, "infer", str(own), base, default="ecva")
    assert (mine.trainer.precision, mine.batch_size) == ("16-mixed", 3)
    assert "precision is spelled trainer.precision now" in caplog.text
    assert compose_tool_args(InferConfig, "infer", "tiny", base).trainer.precision == "32-true"  # old spelling
    assert "spelled infer=NAME now" in caplog.text
    with pytest.raises(ConfigError, match="give one of them"):
        compose_tool_args(InferConfig, "infer", str(own), ["infer=tiny", *base])


def test_tool_schemas_follow_the_family(tmp_path):
    """`vau infer`/`vau eval` keys are the family's: its schema and default conf file."""
    from omegaconf import OmegaConf

    from vau.config.eval import EvalConfig, InferConfig
    from vau.errors import ConfigError, NotFoundError
    from vau.families import eval_schema, infer_schema
    from vau.families.anomshield.tools import AnomShieldEvalConfig, AnomShieldInferConfig

    for name, family in (("a", "lm"), ("b", "anomshield")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "infer.json").write_text(json.dumps({"family": family}))
        (tmp_path / name / "export").mkdir()
        (tmp_path / name / "export" / "config.yaml").write_text(f"model:\n  family: {family}\n")
    assert infer_schema(OmegaConf.create({"model": str(tmp_path / "a")})) == (InferConfig, None)
    assert infer_schema(OmegaConf.create({"model": str(tmp_path / "b")})) == (AnomShieldInferConfig, "ecva")
    with pytest.raises(NotFoundError, match="no export here"):
        infer_schema(OmegaConf.create({"model": str(tmp_path / "none")}))
    assert eval_schema(OmegaConf.create({"predictions": [str(tmp_path / "a")]})) == (EvalConfig, None)
    assert eval_schema(OmegaConf.create({"predictions": [str(tmp_path / "none")]}))[0] is AnomShieldEvalConfig
    assert eval_schema(OmegaConf.create({"family": "lm", "predictions": []}))[0] is EvalConfig
    with pytest.raises(ConfigError, match="written by different families"):
        eval_schema(OmegaConf.create({"predictions": [str(tmp_path / "a"), str(tmp_path / "b")]}))
