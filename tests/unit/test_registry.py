"""Registry: lookups, helpful unknown-name errors, duplicate registration."""

from __future__ import annotations

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
