"""The CLI tells user errors (VauError) in one line and lets a bug raise with its traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vau.cli import main
from vau.errors import ConfigError, NotFoundError, UnknownNameError, VauError
from vau.registry import Registry


def _fail_with(monkeypatch, exc: BaseException) -> None:
    """`vau config show` raises ``exc`` from inside its work, as a bug or a user error would."""
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr("vau.config.compose", boom)  # the command imports it when it runs


@pytest.mark.parametrize("exc", [KeyError("pixel_values"), ValueError("shapes differ"), FileNotFoundError(2, "gone")])
def test_an_internal_error_keeps_its_traceback(monkeypatch, exc):
    _fail_with(monkeypatch, exc)
    with pytest.raises(type(exc)):
        main(["config", "show", "experiment=tiny/lm"])


@pytest.mark.parametrize("exc", [ConfigError("data.batch_size=0: expected a positive integer"),
                                 NotFoundError("init_from=/x: no model.safetensors"),
                                 UnknownNameError("unknown strategy 'dpp' (valid: ddp, single); did you mean ddp?")])
def test_a_user_error_is_one_line_exit_2(monkeypatch, capsys, exc):
    _fail_with(monkeypatch, exc)
    monkeypatch.delenv("VAU_DEBUG", raising=False)
    assert main(["config", "show", "experiment=tiny/lm"]) == 2
    err = capsys.readouterr().err
    assert err == f"vau config: {exc.args[0]}\n", err  # no quotes around a KeyError's text either


def test_vau_debug_shows_the_traceback_of_a_user_error(monkeypatch, capsys):
    _fail_with(monkeypatch, ConfigError("data.batch_size=0: expected a positive integer"))
    monkeypatch.setenv("VAU_DEBUG", "1")
    assert main(["config", "show", "experiment=tiny/lm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in boom" in err
    assert err.strip().splitlines()[-1] == "vau config: data.batch_size=0: expected a positive integer"


def test_user_errors_are_still_the_builtins_callers_catch():
    assert issubclass(ConfigError, ValueError) and issubclass(NotFoundError, FileNotFoundError)
    with pytest.raises(KeyError) as e:
        Registry("strategy").get("dpp")
    assert isinstance(e.value, VauError) and str(e.value).startswith("unknown strategy 'dpp'")


def test_typo_key_is_one_line_through_the_console_script():
    typo = subprocess.run([sys.executable, "-m", "vau", "config", "show", "experiment=tiny/lm", "trainer.max_stepz=3"],
                          capture_output=True, text=True, env={**os.environ, "VAU_DEBUG": "0"})
    assert typo.returncode == 2 and len(typo.stderr.strip().splitlines()) == 1, typo.stderr
    assert "max_stepz" in typo.stderr and "Traceback" not in typo.stderr
