"""AnomEval (Eqs. 11-14) with a scripted judge, its parsers, the judge cache and the HTTP judge."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from eval_fakes import JudgeServer

from vau.config import compose_tool
from vau.config.eval import JudgeConfig
from vau.families.anomshield.tools import AnomEvalConfig
from vau.families.anomshield.tools import AnomShieldEvalConfig as EvalConfig
from vau.eval.judge import (
    JUDGES,
    CachedJudge,
    HFJudge,
    HTTPJudge,
    JudgeError,
    build_judge,
)
from vau.metrics.anomeval import (
    NO_KEY_INFORMATION,
    PROMPT_FIELDS,
    AnomEvalItem,
    aggregate,
    anomeval,
    parse_key_info,
    parse_logic_score,
    parse_questions,
    parse_yes_no,
    score_item,
)

# Test prompts: the first line names the step, the rest shows every field, so the scripted judge
# can tell the steps apart and tests can see what each prompt was filled with.
PROMPTS = {name: "\n".join([f"STEP {name}"] + [f"{f}={{{f}}}" for f in fields])
           for name, fields in PROMPT_FIELDS.items()}

Script = dict[str, "str | Callable[[dict[str, str]], str]"]


class ScriptedJudge:
    """Answers each step with a fixed text or a function of the prompt's fields; records every call."""

    identity = "scripted v1"

    def __init__(self, script: Script) -> None:
        self.script = script
        self.prompts: list[tuple[str, dict[str, str]]] = []

    def complete(self, prompt: str) -> str:
        head, *lines = prompt.split("\n")
        step = head.removeprefix("STEP ")
        fields = dict(line.split("=", 1) for line in lines if "=" in line)
        self.prompts.append((step, fields))
        reply = self.script[step]
        return reply(fields) if callable(reply) else reply

    def steps(self) -> list[str]:
        return [step for step, _ in self.prompts]


def _cfg(**kw) -> AnomEvalConfig:
    kw.setdefault("prompts", dict(PROMPTS))
    return AnomEvalConfig(**kw)


def _item(i: str = "v1", task: str = "description", prediction: str = "A man falls.", **kw) -> AnomEvalItem:
    kw.setdefault("prediction_without_anomaly", "A man walks.")
    return AnomEvalItem(id=i, task=task, question="What happens?", prediction=prediction,
                        reference="A man slips on ice and falls.", **kw)


QUESTIONS = "Here they are:\n1. Does a man slip?\n2. Is there ice?\n3. Does he fall?\n"
GOOD: Script = {
    "key_info": "Key Information Count: 4, Included Key Information Count: 3",
    "logic": "Score: 4",
    "questions": QUESTIONS,
    "answer": lambda f: "Answer: no" if "ice" in f["yes_no_question"] else "Answer: yes",
    "consistency": "Consistent: yes",
}


def test_eqs_11_to_14_exact_arithmetic_on_one_item():
    judge = ScriptedJudge(GOOD)
    cfg = _cfg(w1=0.5, w2=0.3, w3=0.2, questions=3)
    row = score_item(_item(key_sentences=["A man slips.", "He falls."]), judge, cfg)
    assert row["coverage"] == pytest.approx(3 / 4) and row["logic"] == 4
    assert row["s1"] == pytest.approx(100 * 3 / 4 * 4 / 5) == pytest.approx(60)  # in %, as the paper reports
    assert (row["key_total"], row["key_included"]) == (4, 3)
    assert row["yes_no_questions"] == ["Does a man slip?", "Is there ice?", "Does he fall?"]
    assert row["answers"] == [True, False, True] and (row["yes"], row["questions"]) == (2, 3)
    assert row["s2"] == pytest.approx(100 * 2 / 3)
    # Same answer without the anomaly: hallucination, G = 1, s3 = -G (Eq. 13).
    assert row["consistent"] == 1 and row["s3"] == pytest.approx(-100)
    assert row["S"] == pytest.approx(0.5 * 60 + 0.3 * 200 / 3 + 0.2 * -100)
    assert row["unparseable"] == [] and row["reasons"] == {}
    assert (row["id"], row["task"]) == ("v1", "description")
    assert judge.steps() == ["key_info", "logic", "questions", "answer", "answer", "answer", "consistency"]
    assert set(row["raw"]) == {"key_info", "logic", "questions", "answer_1", "answer_2", "answer_3", "consistency"}
    fields = dict(judge.prompts)
    assert fields["key_info"]["key_information"] == "- A man slips."  # first line of the list
    assert fields["questions"]["n"] == "3"
    assert fields["consistency"]["answer_a"] == "A man falls." and fields["consistency"]["answer_b"] == "A man walks."


def test_summary_means_per_task_and_all():
    per_prediction = {  # prediction -> (key_info, logic, answers yes?, consistent)
        "p1": ("Key Information Count: 4, Included Key Information Count: 3", "Score: 4", "yes", "no"),
        "p2": ("key information count: 5\nincluded key information count: 7", "Score: 5", "yes", "no"),
        "p3": ("Key Information Count: 2, Included Key Information Count: 1", "Score: 2", "no", "yes"),
    }

    def by(index: int, label: str) -> Callable[[dict[str, str]], str]:
        return lambda f: label + per_prediction[f.get("prediction") or f["answer_a"]][index]

    judge = ScriptedJudge({"key_info": by(0, ""), "logic": by(1, ""), "questions": QUESTIONS,
                           "answer": by(2, "Answer: "), "consistency": by(3, "Consistent: ")})
    cfg = _cfg(w1=0.4, w2=0.4, w3=0.2)
    items = [_item("a", "description", "p1"), _item("b", "cause", "p2"), _item("c", "description", "p3"),
             _item("d", "not_scored", "p1")]
    rows, summary = anomeval(items, judge, cfg, progress=False)
    assert [r["id"] for r in rows] == ["a", "b", "c"]  # tasks outside cfg.tasks are left out
    s = {r["id"]: (r["s1"], r["s2"], r["s3"], r["S"]) for r in rows}
    assert s["a"] == pytest.approx((60, 100, 0, 0.4 * 60 + 0.4 * 100))
    assert s["b"] == pytest.approx((100, 100, 0, 80))  # M = 7 clipped to N = 5
    assert s["c"] == pytest.approx((20, 0, -100, 0.4 * 20 - 0.2 * 100))
    assert list(summary) == ["description", "cause", "all"]
    d = summary["description"]
    assert (d["n"], d["n_scored"], d["unparseable"]) == (2, 2, 0)
    assert (d["n_items"], d["n_s1"], d["n_s2"], d["n_s3"]) == (2, 2, 2, 2)
    assert d["s1"] == pytest.approx((60 + 20) / 2) and d["s3"] == pytest.approx(-50)
    assert d["s2"] == pytest.approx(100 * (3 + 0) / (3 + 3))  # pooled over items and questions (Eq. 12)
    assert d["S"] == pytest.approx(0.4 * 40 + 0.4 * 50 + 0.2 * -50)
    assert summary["all"]["n"] == 3
    assert summary["all"]["s1"] == pytest.approx((60 + 100 + 20) / 3)


def test_w3_zero_skips_the_consistency_call():
    judge = ScriptedJudge(GOOD)
    prompts = {k: v for k, v in PROMPTS.items() if k != "consistency"}  # not needed either
    row = score_item(_item(), judge, _cfg(w1=0.6, w2=0.4, w3=0.0, prompts=prompts))
    assert "consistency" not in judge.steps()
    assert row["s3"] is None and row["consistent"] is None and row["reasons"] == {"s3": "skipped"}
    assert row["S"] == pytest.approx(0.6 * 60 + 0.4 * 200 / 3)


def test_missing_answer_without_anomaly_leaves_s3_and_s_undefined():
    judge = ScriptedJudge(GOOD)
    row = score_item(_item(prediction_without_anomaly=None), judge, _cfg())
    assert "consistency" not in judge.steps()
    assert row["s3"] is None and row["reasons"] == {"s3": "missing"} and row["S"] is None
    assert row["s1"] == pytest.approx(60) and row["unparseable"] == []


def test_empty_key_sentences_let_the_judge_extract_them():
    judge = ScriptedJudge(GOOD)
    score_item(_item(key_sentences=[]), judge, _cfg())
    assert dict(judge.prompts)["key_info"]["key_information"] == NO_KEY_INFORMATION


def test_unparseable_answers_are_recorded_not_guessed():
    bad = dict(GOOD, key_info="The answer covers most of it.", logic="Score: 7",
               answer=lambda f: "Maybe." if "ice" in f["yes_no_question"] else "Yes, it does.",
               consistency="They are somewhat alike.")
    row = score_item(_item(), ScriptedJudge(bad), _cfg())
    assert row["unparseable"] == ["key_info", "logic", "answer_2", "consistency"]
    assert row["coverage"] is None and row["logic"] is None and row["s1"] is None
    assert row["answers"] == [True, None, True] and row["s2"] is None and row["yes"] is None
    assert row["consistent"] is None and row["s3"] is None and row["S"] is None
    assert row["reasons"] == {"s1": "unparseable", "s2": "unparseable", "s3": "unparseable"}
    assert row["raw"]["logic"] == "Score: 7"

    no_questions = ScriptedJudge(dict(GOOD, questions="I cannot think of any."))
    row = score_item(_item(), no_questions, _cfg())
    assert row["unparseable"] == ["questions"] and row["yes_no_questions"] == [] and row["s2"] is None
    assert "answer" not in no_questions.steps() and row["S"] is None
    assert row["s1"] == pytest.approx(60) and row["s3"] == pytest.approx(-100)


def test_summary_counts_unparseable_items():
    def key_info(f: dict[str, str]) -> str:
        return "no idea" if f["prediction"] == "bad" else GOOD["key_info"]

    judge = ScriptedJudge(dict(GOOD, key_info=key_info))
    rows, summary = anomeval([_item("a"), _item("b", prediction="bad"), _item("c")], judge, _cfg(), progress=False)
    assert [r["S"] is None for r in rows] == [False, True, False]
    d = summary["description"]
    assert (d["n"], d["n_scored"], d["unparseable"]) == (3, 2, 1)
    assert d["s1"] == pytest.approx(60) and d["n_s1"] == 2  # the item without s1 leaves only that term
    assert d["n_s2"] == d["n_s3"] == 3 and d["S"] == pytest.approx(0.4 * 60 + 0.4 * 200 / 3 + 0.2 * -100)


def test_empty_summary_is_none_not_zero():
    rows, summary = anomeval([], ScriptedJudge(GOOD), _cfg(), progress=False)
    assert rows == [] and summary == {"all": {"s1": None, "s2": None, "s3": None, "S": None, "n_items": 0,
                                              "n_s1": 0, "n_s2": 0, "n_s3": 0, "n": 0, "n_scored": 0,
                                              "unparseable": 0}}


def test_missing_or_bad_prompt_fails_before_any_judge_call():
    judge = ScriptedJudge(GOOD)
    prompts = {k: v for k, v in PROMPTS.items() if k != "logic"}
    with pytest.raises(ValueError, match=r"anomeval\.prompts\.logic .*conf/eval/anomeval\.yaml"):
        anomeval([_item()], judge, _cfg(prompts=prompts))
    assert judge.prompts == []
    with pytest.raises(ValueError, match=r"anomeval\.prompts\.logic: bad template .*\{reference\}"):
        score_item(_item(), judge, _cfg(prompts=dict(PROMPTS, logic="{answer}")))


def test_conf_prompts_load_and_fill_every_field():
    cfg = compose_tool(EvalConfig, "eval", "anomeval", ["out=x"]).anomeval
    assert set(cfg.prompts) == set(PROMPT_FIELDS)
    marks = {"key_info": "Included Key Information Count: M", "logic": "Score: L",
             "questions": "1. <question>?", "answer": "Answer: yes", "consistency": "Consistent: no"}
    for name, fields in PROMPT_FIELDS.items():
        text = cfg.prompts[name].format(**{f: f"<<{f}>>" for f in fields})
        assert all(f"<<{f}>>" in text for f in fields), name
        assert marks[name] in text, name
    assert (cfg.w1, cfg.w2, cfg.w3, cfg.questions) == (0.4, 0.4, 0.2, 3)


@pytest.mark.parametrize("text, expected", [
    ("Key Information Count: 4, Included Key Information Count: 3", (4, 3)),
    ("**Key information count:** 5\n**Included key information count:** 2", (5, 2)),
    ("included key information count = 1; key information count = 3", (3, 1)),
    ("Key Information Count: 2, Included Key Information Count: 9", (2, 2)),
    ("Key Information Count: 0, Included Key Information Count: 0", None),
    ("Key Information Count: 4", None),
    ("It includes three of four facts.", None),
])
def test_parse_key_info(text, expected):
    assert parse_key_info(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Score: 4", 4), ("score:0", 0), ("**Score**: 5/5", 5), ("The logic is sound.\nScore: 3", 3),
    ("Score: 3.5", None), ("Score: 6", None), ("Four out of five.", None),
])
def test_parse_logic_score(text, expected):
    assert parse_logic_score(text) == expected


def test_parse_questions():
    text = ("Questions:\n1. Does a man slip?\n2) Is there ice on the road?\nQ3: Does he fall?\n"
            "- Is it night?\n* Is he hurt?\n4. This line has no question mark.\nIs this unnumbered?")
    assert parse_questions(text) == ["Does a man slip?", "Is there ice on the road?", "Does he fall?",
                                     "Is it night?", "Is he hurt?"]
    assert parse_questions(text, 2) == ["Does a man slip?", "Is there ice on the road?"]
    assert parse_questions("No questions here.", 3) == []


@pytest.mark.parametrize("text, label, expected", [
    ("Answer: yes", "Answer", True), ("answer: NO.", "Answer", False), ("**Answer:** Yes", "Answer", True),
    ("Yes, the text says so.", "Answer", True), ("no", "Answer", False),
    ("Consistent: no", "Consistent", False), ("Consistent: yes", "Consistent", True),
    ("Answer: maybe", "Answer", None), ("I think the answer is yes", "Answer", None), ("Nobody knows", "Answer", None),
])
def test_parse_yes_no(text, label, expected):
    assert parse_yes_no(text, label) is expected


def test_cached_rerun_makes_no_judge_calls_and_gives_identical_results(tmp_path):
    items = [_item("a"), _item("b", "cause", "He falls down.")]
    first = CachedJudge(ScriptedJudge(GOOD), tmp_path)
    result = anomeval(items, first, _cfg(), progress=False)
    # Both items share the reference, so its yes/no questions are written once.
    assert (first.calls, first.hits) == (13, 1)
    inner = ScriptedJudge(GOOD)
    again = CachedJudge(inner, tmp_path)
    assert anomeval(items, again, _cfg(), progress=False) == result
    assert (again.calls, again.hits, inner.prompts) == (0, 14, [])

    prompt = PROMPTS["logic"].format(question="q", reference="r", prediction="p")
    path = first.path(prompt)
    assert path.parent.parent == tmp_path and path.parent.name == path.stem[:2] and len(path.stem) == 64
    assert not path.exists()  # not asked yet
    first.complete(prompt)
    assert json.loads(path.read_text()) == {"identity": "scripted v1", "prompt": prompt, "answer": "Score: 4"}


def test_corrupt_cache_file_is_a_miss_and_is_overwritten(tmp_path):
    judge = CachedJudge(ScriptedJudge(GOOD), tmp_path)
    prompt = "STEP logic\nquestion=q"
    path = judge.path(prompt)
    path.parent.mkdir(parents=True)
    path.write_text('{"identity": "scripted v1", "prompt": "STEP lo')  # torn write
    assert judge.complete(prompt) == "Score: 4"
    assert (judge.calls, judge.hits) == (1, 0)
    assert json.loads(path.read_text())["answer"] == "Score: 4"
    assert judge.complete(prompt) == "Score: 4" and (judge.calls, judge.hits) == (1, 1)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_cache_key_depends_on_judge_identity(tmp_path):
    other = ScriptedJudge(GOOD)
    other.identity = "scripted v2"
    a, b = CachedJudge(ScriptedJudge(GOOD), tmp_path), CachedJudge(other, tmp_path)
    assert a.path("p") != b.path("p")


KEY_ENV = "VAU_TEST_JUDGE_KEY"


def _http_cfg(url: str, **kw) -> JudgeConfig:
    kw = {"retries": 3, "backoff_s": 0.5, "timeout_s": 5.0, **kw}
    return JudgeConfig(kind="http", model="fake-judge", base_url=url, api_key_env=KEY_ENV,
                       max_new_tokens=32, **kw)


def test_http_judge_sends_key_as_bearer_and_retries_with_doubling_backoff(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-secret")
    with JudgeServer(lambda prompt: f"Answer: yes ({prompt})", fail_first=2) as server:
        judge = HTTPJudge(_http_cfg(server.url))
        sleeps: list[float] = []
        judge.sleep = sleeps.append
        assert judge.complete("Is it?") == "Answer: yes (Is it?)"
    assert sleeps == [0.5, 1.0]
    assert server.auth == ["Bearer sk-test-secret"] * 3
    assert server.requests[-1] == {"model": "fake-judge", "messages": [{"role": "user", "content": "Is it?"}],
                                   "temperature": 0.0, "max_tokens": 32}
    assert "sk-test-secret" not in judge.identity and "fake-judge" in judge.identity


def test_http_judge_retries_rate_limits_then_gives_up(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    with JudgeServer(lambda p: "x", fail_first=99, fail_status=429) as server:
        judge = HTTPJudge(_http_cfg(server.url, retries=2, backoff_s=1.0))
        sleeps: list[float] = []
        judge.sleep = sleeps.append
        with pytest.raises(JudgeError, match=r"failed 3 time\(s\), last: HTTP 429"):
            judge.complete("q")
    assert sleeps == [1.0, 2.0] and len(server.requests) == 3


def test_http_judge_4xx_fails_at_once_with_one_line(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    with JudgeServer(lambda p: "x", status=400) as server:
        judge = HTTPJudge(_http_cfg(server.url))
        judge.sleep = lambda s: pytest.fail("a 400 must not be retried")
        with pytest.raises(JudgeError) as err:
            judge.complete("q")
    message = str(err.value)
    assert "HTTP 400" in message and "fake error 400" in message and "\n" not in message
    assert len(server.requests) == 1


def test_http_judge_retries_network_errors_and_timeouts(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k")
    with JudgeServer(lambda p: "x") as server:
        url = server.url
    judge = HTTPJudge(_http_cfg(url, retries=1))  # nothing listens there any more
    judge.sleep = lambda s: None
    with pytest.raises(JudgeError, match=r"failed 2 time\(s\), last: URLError"):
        judge.complete("q")

    def slow_first(prompt: str) -> str:
        if len(server.requests) == 1:
            time.sleep(1.0)
        return "late but fine"

    with JudgeServer(slow_first) as server:
        judge = HTTPJudge(_http_cfg(server.url, timeout_s=0.2))
        sleeps: list[float] = []
        judge.sleep = sleeps.append
        assert judge.complete("q") == "late but fine"
    assert sleeps == [0.5] and len(server.requests) == 2


def test_http_judge_unset_key_names_the_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with JudgeServer(lambda p: "x") as server, pytest.raises(JudgeError, match=f"{KEY_ENV} is not set"):
        HTTPJudge(_http_cfg(server.url)).complete("q")
    assert server.requests == []


def test_registry_and_build_judge(tmp_path, monkeypatch):
    assert JUDGES.names() == ["hf", "http"]
    cfg = _http_cfg("http://127.0.0.1:9/v1")
    judge = build_judge(cfg, tmp_path / "default")
    assert isinstance(judge.judge, HTTPJudge) and judge.cache_dir == tmp_path / "default"
    cfg.cache_dir = str(tmp_path / "mine")
    assert build_judge(cfg, tmp_path / "default").cache_dir == Path(cfg.cache_dir)
    with pytest.raises(KeyError, match="unknown judge backend 'htp'.*did you mean http"):
        build_judge(JudgeConfig(kind="htp"), tmp_path)


def test_hf_judge_needs_a_model_folder(tmp_path):
    with pytest.raises(ValueError, match="judge.model is null"):
        HFJudge(JudgeConfig(kind="hf"))
    with pytest.raises(FileNotFoundError, match="not a directory"):
        HFJudge(JudgeConfig(kind="hf", model=str(tmp_path / "nope")))


def _eqs_11_to_14(items, w1, w2, w3):
    """Eqs. 11-14 written out independently: numpy masked arrays over the item table."""
    import numpy as np

    def col(name):
        values = [it.get(name) for it in items]
        return np.ma.masked_invalid(np.array([np.nan if v is None else float(v) for v in values]))

    k, g, logic, yes, t, c = (col(n) for n in ("key_total", "key_included", "logic", "yes", "questions", "consistent"))
    k = np.ma.masked_where(k == 0, k)
    s1_i = (g / k) * (logic / 5.0)
    pair = ~(np.ma.getmaskarray(yes) | np.ma.getmaskarray(t) | (t.filled(0) == 0))
    s1 = None if s1_i.count() == 0 else 100.0 * float(s1_i.mean())
    s2 = None if not pair.any() else 100.0 * float(yes.filled(0)[pair].sum() / t.filled(0)[pair].sum())
    s3 = None if c.count() == 0 else -100.0 * float(c.mean())
    weighted = [(w, s) for w, s in ((w1, s1), (w2, s2), (w3, s3)) if w != 0]
    total = None if any(s is None for _, s in weighted) else sum(w * s for w, s in weighted)
    return {"s1": s1, "s2": s2, "s3": s3, "S": total, "n_s1": int(s1_i.count()), "n_s2": int(pair.sum()),
            "n_s3": int(c.count()), "n_items": len(items)}


@pytest.mark.parametrize("seed", range(6))
def test_aggregate_equals_an_independent_computation_of_eqs_11_to_14(seed):
    import random

    rng = random.Random(seed)

    def maybe(value):
        return None if rng.random() < 0.2 else value

    items = []
    for _ in range(rng.randint(1, 12)):
        k = rng.randint(0, 6)
        t = rng.randint(0, 4)
        items.append({"key_total": maybe(k), "key_included": maybe(rng.randint(0, k)), "logic": maybe(rng.randint(0, 5)),
                      "yes": maybe(rng.randint(0, t)), "questions": maybe(t), "consistent": maybe(rng.randint(0, 1))})
    weights = [(0.4, 0.4, 0.2), (0.5, 0.5, 0.0), (1 / 3, 1 / 3, 1 / 3)][seed % 3]
    got, want = aggregate(items, *weights), _eqs_11_to_14(items, *weights)
    for key, value in want.items():
        assert got[key] == (None if value is None else pytest.approx(value)), (key, items)


def test_aggregate_closed_form_and_signs():
    items = [{"key_total": 4, "key_included": 2, "logic": 5, "yes": 1, "questions": 1, "consistent": 1},
             {"key_total": 2, "key_included": 2, "logic": 0, "yes": 0, "questions": 3, "consistent": 0}]
    got = aggregate(items, 0.4, 0.4, 0.2)
    # s1 = mean(0.5 * 1, 1 * 0) = 25 %; s2 = (1 + 0) / (1 + 3) = 25 % (pooled, not the mean 50 %);
    # s3 = -mean(1, 0) = -50 %: a hallucination lowers S (Eq. 13).
    assert (got["s1"], got["s2"], got["s3"]) == pytest.approx((25, 25, -50))
    assert got["S"] == pytest.approx(0.4 * 25 + 0.4 * 25 + 0.2 * -50)
    only_s3 = aggregate([{"consistent": 1}], 0.4, 0.4, 0.2)
    assert only_s3["S"] is None and only_s3["s3"] == -100 and (only_s3["n_s1"], only_s3["n_s3"]) == (0, 1)
    assert aggregate([{"consistent": 1}], 0.0, 0.0, 1.0)["S"] == -100
