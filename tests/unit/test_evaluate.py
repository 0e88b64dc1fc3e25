"""`vau eval`: per-task metrics against independent computations, outputs, wandb, cached AnomEval."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from eval_fakes import JUDGE_KEY_ENV, JudgeServer, judge_answer, write_predictions

from vau.config import compose_tool
from vau.families.anomshield.tools import AnomShieldEvalConfig as EvalConfig
from vau.eval.evaluate import (
    evaluate,
    load_predictions,
    markdown_table,
    model_names,
)
from vau.families.anomshield.evaluate import rouge2
from vau.metrics import caption_scores


def _row(id: str, task: str, answer: str, reference: str | None = None, **extra) -> dict:
    video = id.split("#")[0]
    return {"id": id, "video": video, "task": task, "prompt": f"{task} question about {video}?", "answer": answer,
            "reference": reference, "sampling": "uniform", "segments": None, **extra}


MODEL_A = [
    _row("v1#0", "description", "a man breaks a window with a rock", "a man breaks a shop window with a rock",
         key_sentences=["a man", "breaks a shop window"], answer_no_anomaly="a man walks past a shop",
         sampling="hard_prompt", segments=[[0, 2], [4, 6]]),
    _row("v2#0", "description", "two cars crash at a crossing", "two cars collide at a crossing and one car flips",
         answer_no_anomaly="cars wait at a crossing", sampling="hard_prompt", segments=[[1, 3]]),
    _row("v3#0", "description", "a dog runs", None),  # no reference: skipped with a note
    _row("v1#1", "cause", "he wanted to steal goods", "the man wants to steal goods from the shop",
         answer_no_anomaly="he is shopping"),
    _row("v2#1", "cause", "one car ran a red light", "a car ignores the red light", answer_no_anomaly="traffic"),
    _row("v1#2", "classification", "This looks like vandalism.", classes=["Crime/Vandalism"]),
    _row("v2#2", "classification", "A robbery.", classes=["Traffic accident/Collision"]),
    _row("v1#3", "timestamp", "It happens from 2.0 s to 4.0 s.", anomaly_segments=[[2, 6]]),  # IoU 1/2
    _row("v2#3", "timestamp", "[0001,0003]", anomaly_segments=[[0, 3]]),  # IoU 2/3
    _row("v3#3", "timestamp", "I cannot tell.", anomaly_segments=[[1, 2]]),  # unparseable: IoU 0
    _row("v1#4", "detection", "Yes, a window is broken.", "Yes."),
    _row("v2#4", "detection", "No.", "Yes, there is a crash."),
    _row("v3#4", "detection", "Maybe.", "No."),  # no leading yes/no: wrong
]
_B_ANSWERS = {"v1#0": "a person throws a rock at a window", "v2#0": "a car accident happens",
              "v1#1": "the man wants money", "v2#2": "a car collision", "v3#3": "00:01 - 00:02", "v3#4": "No"}
MODEL_B = [{**r, "answer": _B_ANSWERS.get(r["id"], r["answer"]), "sampling": "uniform", "segments": None}
           for r in MODEL_A]
def _cfg(tmp_path: Path, config: str | None = None, **overrides) -> EvalConfig:
    base = {"predictions": f"[{tmp_path / 'a'},{tmp_path / 'b' / 'predictions.jsonl'}]", "out": str(tmp_path / "out"),
            "anomeval.enabled": "false", "wandb": "disabled", "progress": "false"}
    base.update(overrides)
    return compose_tool(EvalConfig, "eval", config, [f"{k}={v}" for k, v in base.items()])


def _expected(rows: list[dict], task: str) -> tuple[dict, dict]:
    scored = [r for r in rows if r["task"] == task and r["reference"]]
    return {r["id"]: r["answer"] for r in scored}, {r["id"]: [r["reference"]] for r in scored}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Two models, caption metrics on description and cause, wandb offline; (tmp dir, results)."""
    tmp = tmp_path_factory.mktemp("eval")
    write_predictions(tmp / "a", MODEL_A)
    write_predictions(tmp / "b", MODEL_B)
    cfg = _cfg(tmp, caption_tasks="[description,cause]", wandb="offline", wandb_project="vau-test")
    return tmp, evaluate(cfg)


@pytest.mark.parametrize("model,rows", [("a", MODEL_A), ("b", MODEL_B)])
@pytest.mark.parametrize("task", ["description", "cause"])
def test_caption_metrics_equal_caption_scores(evaluated, model, rows, task):
    got = evaluated[1]["models"][model]["tasks"][task]
    preds, refs = _expected(rows, task)
    assert got["n"] == len(preds)
    want = caption_scores(preds, refs)
    assert {k: got[k] for k in want} == want


@pytest.mark.parametrize("model,rows", [("a", MODEL_A), ("b", MODEL_B)])
@pytest.mark.parametrize("task", ["description", "cause"])
def test_rouge2_equals_torchmetrics(evaluated, model, rows, task):
    from torchmetrics.text.rouge import ROUGEScore

    preds, refs = _expected(rows, task)
    want = ROUGEScore(rouge_keys=("rouge2",))(list(preds.values()), [refs[k] for k in preds])["rouge2_fmeasure"]
    assert evaluated[1]["models"][model]["tasks"][task]["ROUGE-2"] == pytest.approx(float(want), abs=1e-6)


@pytest.mark.parametrize("model,rows", [("a", MODEL_A), ("b", MODEL_B)])
@pytest.mark.parametrize("task", ["description", "cause"])
def test_paper_bleu_rouge_equal_the_reference_script_computation(evaluated, model, rows, task):
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_score.rouge_scorer import RougeScorer

    got = evaluated[1]["models"][model]["tasks"][task]
    preds, refs = _expected(rows, task)
    # eval_bleu_rouge.py: get_bleu_score(response, answer), get_rouge_score(response, answer), mean over answers
    scorer = RougeScorer(["rouge2", "rougeL"], use_stemmer=True)
    bleu = [sentence_bleu([preds[k].split()], refs[k][0].split(), smoothing_function=SmoothingFunction().method1)
            for k in preds]
    rouge = [scorer.score(preds[k], refs[k][0]) for k in preds]
    assert got["ECVA-BLEU"] == pytest.approx(sum(bleu) / len(bleu))
    assert got["ECVA-ROUGE-2"] == pytest.approx(sum(r["rouge2"].fmeasure for r in rouge) / len(rouge))
    assert got["ECVA-ROUGE-L"] == pytest.approx(sum(r["rougeL"].fmeasure for r in rouge) / len(rouge))


def test_rouge2_closed_form_best_reference():
    # bigrams {the man, man runs} vs {the man, man falls}: P = R = F = 1/2; the unrelated reference scores 0.
    assert rouge2({"x": "the man runs"}, {"x": ["the man falls", "a dog barks"]}) == pytest.approx(0.5)
    assert rouge2({"x": "the man runs", "y": "a dog barks"}, {"x": ["the man falls"], "y": ["a dog barks"]}) == \
        pytest.approx(0.75)


def test_task_metrics_equal_hand_computed(evaluated):
    a, b = (evaluated[1]["models"][m]["tasks"] for m in ("a", "b"))
    assert a["classification"] == {"accuracy": 0.5, "n": 2}
    assert b["classification"] == {"accuracy": 1.0, "n": 2}
    assert a["timestamp"] == pytest.approx({"mIoU": (1 / 2 + 2 / 3 + 0) / 3, "R@0.3": 2 / 3, "R@0.5": 2 / 3,
                                            "R@0.7": 0.0, "unparseable": 1, "n": 3})
    assert b["timestamp"] == pytest.approx({"mIoU": (1 / 2 + 2 / 3 + 1) / 3, "R@0.3": 1.0, "R@0.5": 1.0,
                                            "R@0.7": 1 / 3, "unparseable": 0, "n": 3})
    assert a["detection"] == pytest.approx({"accuracy": 1 / 3, "unparseable": 1, "n": 3})
    assert b["detection"] == pytest.approx({"accuracy": 2 / 3, "unparseable": 0, "n": 3})


def test_skipped_lines_notes_and_hard_prompt_stats(evaluated):
    a, b = (evaluated[1]["models"][m] for m in ("a", "b"))
    assert a["skipped_lines"] == b["skipped_lines"] == 2
    assert any("'description': 1 of 3 answer(s) without a usable reference" in n for n in a["notes"])
    assert a["hard_prompt"] == {"n": 2, "mean_segments": 1.5}
    assert "hard_prompt" not in b
    assert a["anomeval_items"] == [] and evaluated[1]["judge_calls"] == 0


def test_bad_lines_warn_with_file_and_line(tmp_path, caplog):
    path = write_predictions(tmp_path / "m", MODEL_A[:2])
    with caplog.at_level(logging.WARNING, logger="vau.eval"):
        rows, skipped = load_predictions(tmp_path / "m", ("id", "task", "answer"))  # ECVA rows
    assert [r["id"] for r in rows] == ["v1#0", "v2#0"] and skipped == 2
    assert f"{path}:3: skipped" in caplog.text and f"{path}:4: skipped" in caplog.text


def test_outputs_markdown_and_wandb(evaluated):
    tmp, results = evaluated
    out = tmp / "out"
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    md = (out / "results.md").read_text()
    assert md == markdown_table(results)
    caption, off, tasks, extra_label, extra = md.strip().split("\n\n")
    lines = caption.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # the paper's Tabs. III-V columns that need no model or judge (the rest are off by default)
    assert header == ["Model", *(f"{t} {c}" for t in ("description", "cause") for c in ("BLEU", "ROUGE-2", "ROUGE-L"))]
    row_a = [c.strip() for c in lines[2].strip("|").split("|")]
    desc = results["models"]["a"]["tasks"]["description"]
    assert row_a[:4] == ["a", *(f"{desc[k] * 100:.2f}" for k in ("ECVA-BLEU", "ECVA-ROUGE-2", "ECVA-ROUGE-L"))]
    assert lines[3].startswith("| b |")
    assert off == ("Not computed: BLEURT (metrics.bleurt=null), MoverScore (metrics.moverscore=null), "
                   "UniEval (metrics.unieval=null), GPT (metrics.gpt_score=false), AnomEval (anomeval.enabled=false).")
    assert tasks.splitlines()[0] == "| Model | Cls. Acc | mIoU | R@0.3 | R@0.5 | R@0.7 | Det. Acc |"
    assert extra_label == "Extra metrics (not in the paper):"
    extra_header = [c.strip() for c in extra.splitlines()[0].strip("|").split("|")]
    assert extra_header == ["Model", *(f"{t} {c}" for t in ("description", "cause")
                                       for c in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr",
                                                 "ROUGE-2 (no stem)", "ROUGE-1"))]
    extra_a = [c.strip() for c in extra.splitlines()[2].strip("|").split("|")]
    assert extra_a[4] == f"{desc['BLEU-4'] * 100:.2f}" and extra_a[6] == f"{desc['ROUGE-L'] * 100:.2f}"
    assert "| a | 50.00 | 38.89 | 66.67 | 66.67 | 0.00 | 33.33 |" in tasks
    assert len(list((out / "wandb").glob("offline-run-*"))) == 1


def test_references_file_overrides_by_id(tmp_path):
    write_predictions(tmp_path / "a", MODEL_A)
    write_predictions(tmp_path / "b", MODEL_B)
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"id": "v3#4", "reference": "Maybe no."}) + "\n"  # no yes/no: not scorable
                    + json.dumps({"id": "v2#4", "reference": "No."}) + "\n")
    results = evaluate(_cfg(tmp_path, caption_tasks="[]", references=str(refs)))
    assert results["models"]["a"]["tasks"]["detection"] == {"accuracy": 1.0, "unparseable": 0, "n": 2}


def test_duplicate_row_names_are_an_error(tmp_path):
    write_predictions(tmp_path / "x" / "run", MODEL_A)
    write_predictions(tmp_path / "y" / "run", MODEL_A)
    with pytest.raises(ValueError, match="row name 'run' is used by more than one"):
        model_names([str(tmp_path / "x" / "run"), str(tmp_path / "y" / "run" / "predictions.jsonl")], [])
    assert model_names([str(tmp_path / "x" / "run"), str(tmp_path / "y" / "run")], ["X", "Y"]) == ["X", "Y"]


def test_cli_prints_table_and_paths(tmp_path, capsys):
    from vau.cli import main

    write_predictions(tmp_path / "a", MODEL_A)
    out = tmp_path / "out"
    assert main(["eval", f"predictions=[{tmp_path / 'a'}]", f"out={out}", "caption_tasks=[]",
                 "anomeval.enabled=false", "wandb=disabled"]) == 0
    printed = capsys.readouterr().out
    assert "| Model | Cls. Acc |" in printed and f"wrote {out / 'results.json'}" in printed
    assert main(["eval", "out=x"]) == 2
    assert "predictions: no files given" in capsys.readouterr().err
    # conf/eval/ecva.yaml leaves the local judge unset: a one-line error naming the key
    assert main(["eval", f"predictions=[{tmp_path / 'a'}]", f"out={out}", "wandb=disabled"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "anomeval.judge.model is null: set it to a local HF model folder (anomeval.judge.kind=hf)")


def test_anomeval_rerun_is_cached_and_equal(tmp_path, monkeypatch):
    write_predictions(tmp_path / "a", MODEL_A)
    write_predictions(tmp_path / "b", MODEL_B)
    monkeypatch.setenv(JUDGE_KEY_ENV, "test-key")
    with JudgeServer(judge_answer) as server:
        cfg = _cfg(tmp_path, "http", caption_tasks="[]", names="[A,B]", **{
            "anomeval.enabled": "true", "anomeval.judge.base_url": server.url, "anomeval.judge.model": "fake",
            "anomeval.judge.api_key_env": JUDGE_KEY_ENV})
        first = evaluate(cfg)
        sent = len(server.requests)
        second = evaluate(cfg)
        assert len(server.requests) == sent  # everything from judge_cache/
    prompts = [r["messages"][-1]["content"] for r in server.requests]
    assert sent == len(set(prompts)) == first["judge_calls"] > 0
    # B's yes/no questions come from the same references as A's: cache hits already in the first run.
    assert first["judge_cache_hits"] > 0 and second["judge_calls"] == 0
    assert second["judge_cache_hits"] == first["judge_calls"] + first["judge_cache_hits"]
    assert set(server.auth) == {"Bearer test-key"}
    assert second["models"] == first["models"]
    a = first["models"]["A"]
    assert [i["id"] for i in a["anomeval_items"]] == ["v1#0", "v2#0", "v1#1", "v2#1"]
    assert all(i["S"] == pytest.approx(64) for i in a["anomeval_items"])  # in % (see eval_fakes.judge_answer)
    assert a["tasks"]["description"] == pytest.approx({"n": 2, "AnomEval": 64, "AnomEval-s1": 60, "AnomEval-s2": 100,
                                                       "AnomEval-s3": 0, "AnomEval-n_s1": 2, "AnomEval-n_s2": 2,
                                                       "AnomEval-n_s3": 2, "AnomEval-n_scored": 2,
                                                       "AnomEval-unparseable": 0})
    items = [json.loads(line) for line in (tmp_path / "out" / "anomeval_items.jsonl").read_text().splitlines()]
    assert [(i["model"], i["id"]) for i in items] == [(m, i) for m in "AB" for i in ("v1#0", "v2#0", "v1#1", "v2#1")]
    assert "| A |" in markdown_table(first) and "description AnomEval" in markdown_table(first)


def test_wandb_off_has_one_spelling_and_the_old_one_still_works(caplog):
    from vau.config.schema import wandb_mode_of
    from vau.errors import ConfigError

    assert [wandb_mode_of(m, "wandb") for m in ("offline", "online", "disabled")] == ["offline", "online", "disabled"]
    assert wandb_mode_of("none", "wandb") == "disabled"
    assert "spelled 'disabled'" in caplog.text
    with pytest.raises(ConfigError, match=r"^logger.wandb.mode='off': expected offline, online, disabled$"):
        wandb_mode_of("off", "logger.wandb.mode")


def _exported(tmp_path: Path, name: str, group: str | None, project: str = "proj") -> Path:
    """Predictions of a run dir ``name`` (export/config.yaml, wandb/run_id) as `vau infer` leaves them."""
    export = tmp_path / name / "export"
    export.mkdir(parents=True)
    wandb = {"project": project, **({"group": group} if group else {})}
    (export / "config.yaml").write_text(json.dumps({"run": {"dir": f"runs/{name}"}, "logger": {"wandb": wandb}}))
    (tmp_path / name / "config.yaml").write_text("{}")
    (tmp_path / name / "wandb").mkdir()
    (tmp_path / name / "wandb" / "run_id").write_text(f"id-{name}\n")
    preds = tmp_path / f"{name}_infer"
    write_predictions(preds, MODEL_A[:1], broken=False)
    (preds / "infer.json").write_text(json.dumps({"family": "anomshield", "model": str(export)}))
    return preds


def test_eval_run_joins_the_group_its_models_share_else_none_with_a_log_line(tmp_path, caplog):
    from vau.eval.evaluate import wandb_link

    a, b, c = (_exported(tmp_path, n, g) for n, g in (("a", "abl"), ("b", "abl"), ("c", "other")))
    bare = tmp_path / "bare"
    write_predictions(bare, MODEL_A[:1], broken=False)  # no infer.json: no export to follow

    def link(*preds: Path):
        return wandb_link(_cfg(tmp_path, predictions=f"[{','.join(map(str, preds))}]"), [p.name for p in preds])

    init, entries = link(a)
    assert init == {"group": "abl", "project": "proj", "entity": None}
    assert entries == {"export": str(tmp_path / "a" / "export"), "training_run": "id-a",
                       "training_run_dir": str((tmp_path / "a").resolve()), "training_project": "proj"}
    init, entries = link(a, b)
    assert init["group"] == "abl" and entries["training_run"] == {"a_infer": "id-a", "b_infer": "id-b"}
    with caplog.at_level(logging.INFO, logger="vau.eval"):
        assert link(a, c)[0]["group"] is None
        assert "joins no wandb group: the training runs are in different wandb groups" in caplog.text
        caplog.clear()
        init, entries = link(bare)
        assert init == {"group": None, "project": "vau", "entity": None} and entries["export"] is None
        assert "infer.json names no export" in caplog.text
    # an explicit wandb_project wins over the training runs'
    assert wandb_link(_cfg(tmp_path, predictions=f"[{a}]", wandb_project="mine"), ["a"])[0]["project"] == "mine"
