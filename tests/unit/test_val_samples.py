"""The validation-samples callback's own parts: val_samples.jsonl across a resume, tasks without generation."""

from __future__ import annotations

import json

from vau.config import compose
from vau.lit.module import VauModule
from vau.lit.samples import SAMPLES_FILE, ValidationSamples


def _rows(step: int, ids: list[str]) -> list[dict]:
    return [{"id": i, "image": None, "question": f"q {i}", "answer": f"a {i} at {step}", "reference": f"r {i}"}
            for i in ids]


def _read(path) -> list[tuple[int, str, str]]:
    return [(r["step"], r["id"], r["answer"]) for r in map(json.loads, path.read_text().splitlines())]


def test_rows_append_per_validation_and_a_resumed_step_replaces_the_interrupted_segments(tmp_path):
    cb = ValidationSamples(2, 8, tmp_path)
    cb._write(10, _rows(10, ["a", "b"]))
    cb._write(20, _rows(20, ["a", "b"]))
    cb._write(30, _rows(30, ["a", "b"]))
    assert [s for s, _, _ in _read(tmp_path / SAMPLES_FILE)] == [10, 10, 20, 20, 30, 30]
    # Resumed from the step-10 checkpoint: its validation at 20 re-does 20 and 30 is not reached yet.
    cb._write(20, _rows(20, ["a", "b"])[:1])
    assert _read(tmp_path / SAMPLES_FILE) == [(10, "a", "a a at 10"), (10, "b", "a b at 10"), (20, "a", "a a at 20")]
    row = json.loads((tmp_path / SAMPLES_FILE).read_text().splitlines()[0])
    assert row == {"step": 10, "id": "a", "question": "q a", "answer": "a a at 10", "reference": "r a"}
    assert not [p for p in tmp_path.iterdir() if p.name != SAMPLES_FILE]  # no temp file left behind


def test_a_task_without_generation_keeps_no_clips(tmp_path):
    module = VauModule(compose(["experiment=tiny/lm"]))
    assert module.task.validation_samples(module.model, {}, 4, max_new_tokens=8) == []
    cb = ValidationSamples(4, 8, tmp_path)
    cb.setup(None, module, "fit")
    assert not cb.enabled
    assert not ValidationSamples(0, 8, tmp_path).enabled
