"""RunCSVLogger: metrics.csv in the run dir, continued (not truncated) after a restart."""

from __future__ import annotations

import csv
import os

import pytest

from vau.lit.loggers import RunCSVLogger


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _log(logger, steps, **values):
    for s in steps:
        logger.log_metrics({k: f(s) for k, f in values.items()}, step=s)


def _loss_a(s):
    return 1.0 / (s + 1)


def _loss_b(s):
    return 100.0 + s


def test_writes_metrics_csv_in_run_dir(tmp_path):
    logger = RunCSVLogger(tmp_path)
    assert logger.log_dir == str(tmp_path)
    _log(logger, range(6), loss=_loss_a, lr=lambda s: 0.1 * s)
    logger.save()
    fields, rows = _rows(tmp_path)
    assert "step" in fields and "loss" in fields and "lr" in fields
    assert [int(r["step"]) for r in rows] == list(range(6))
    assert [float(r["loss"]) for r in rows] == pytest.approx([_loss_a(s) for s in range(6)])
    assert [f for f in os.listdir(tmp_path)] == ["metrics.csv"]  # no temp files


def test_restart_keeps_old_rows_and_replaces_redone_steps(tmp_path):
    first = RunCSVLogger(tmp_path)
    _log(first, range(6), loss=_loss_a)
    first.save()

    second = RunCSVLogger(tmp_path)  # restart from a checkpoint at step 3
    _log(second, range(3, 8), loss=_loss_b)
    second.experiment.save()

    fields, rows = _rows(tmp_path)
    assert set(fields) == {"step", "loss"}
    steps = [int(r["step"]) for r in rows]
    assert steps == [0, 1, 2, 3, 4, 5, 6, 7]  # each step exactly once
    losses = {int(r["step"]): float(r["loss"]) for r in rows}
    for s in range(3):
        assert losses[s] == pytest.approx(_loss_a(s))  # from the first run
    for s in range(3, 8):
        assert losses[s] == pytest.approx(_loss_b(s))  # from the second run

    # later saves of the same run append
    _log(second, [8, 9], loss=_loss_b)
    second.save()
    _, rows = _rows(tmp_path)
    assert [int(r["step"]) for r in rows] == list(range(10))


def test_restart_first_save_in_chunks(tmp_path):
    first = RunCSVLogger(tmp_path)
    _log(first, range(6), loss=_loss_a)
    first.save()
    second = RunCSVLogger(tmp_path)
    _log(second, [3, 4], loss=_loss_b)
    second.save()
    _log(second, [5, 6, 7], loss=_loss_b)
    second.save()
    _, rows = _rows(tmp_path)
    assert [int(r["step"]) for r in rows] == list(range(8))
    assert float(rows[5]["loss"]) == pytest.approx(_loss_b(5))


def test_new_key_adds_column_without_losing_rows(tmp_path):
    logger = RunCSVLogger(tmp_path)
    _log(logger, range(3), loss=_loss_a)
    logger.save()
    _log(logger, [3, 4], loss=_loss_a, val_acc=lambda s: s / 10)
    logger.save()
    fields, rows = _rows(tmp_path)
    assert {"step", "loss", "val_acc"} <= set(fields)
    assert [int(r["step"]) for r in rows] == list(range(5))
    assert [r["val_acc"] for r in rows[:3]] == ["", "", ""]
    assert float(rows[4]["val_acc"]) == pytest.approx(0.4)
    assert [float(r["loss"]) for r in rows] == pytest.approx([_loss_a(s) for s in range(5)])


def test_new_key_in_first_save_after_restart(tmp_path):
    first = RunCSVLogger(tmp_path)
    _log(first, range(6), loss=_loss_a)
    first.save()
    second = RunCSVLogger(tmp_path)
    _log(second, range(4, 7), loss=_loss_b, grad_norm=lambda s: float(s))
    second.save()
    fields, rows = _rows(tmp_path)
    assert {"step", "loss", "grad_norm"} <= set(fields)
    assert [int(r["step"]) for r in rows] == list(range(7))
    assert rows[0]["grad_norm"] == "" and float(rows[6]["grad_norm"]) == 6.0
    assert float(rows[3]["loss"]) == pytest.approx(_loss_a(3))


def test_validation_rows_share_a_step(tmp_path):
    logger = RunCSVLogger(tmp_path)
    _log(logger, range(4), loss=_loss_a)
    logger.log_metrics({"val_loss": 0.5}, step=3)
    logger.save()
    second = RunCSVLogger(tmp_path)
    _log(second, [2, 3], loss=_loss_b)
    second.save()
    _, rows = _rows(tmp_path)
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]
    assert all(r.get("val_loss", "") == "" for r in rows)  # the redone step's old val row is gone


def test_save_without_metrics_does_not_touch_file(tmp_path):
    logger = RunCSVLogger(tmp_path)
    logger.save()
    assert not (tmp_path / "metrics.csv").exists()
    _log(logger, [0], loss=_loss_a)
    logger.save()
    text = (tmp_path / "metrics.csv").read_text()
    RunCSVLogger(tmp_path).save()
    assert (tmp_path / "metrics.csv").read_text() == text
