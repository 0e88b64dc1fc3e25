"""`vau eval` of AnomShield answers (ECVA §V, Tabs. III-VI): per-task metrics and AnomEval.

Free-text tasks (``caption_tasks``) get the paper's columns (Tabs. III-V): BLEU, ROUGE-2, ROUGE-L
as ECVA's eval_bleu_rouge.py computes them (:mod:`vau.metrics.ecva_text`), BLEURT, MoverScore,
UniEval from local checkpoints (:mod:`vau.metrics.learned`, each off while its ``metrics.*``
path is null), the GPT score (:mod:`vau.metrics.gpt_score`, ``metrics.gpt_score``) and AnomEval
(both through the anomeval judge, whose answers are cached on disk, so a killed evaluation
re-run repeats no judge call); and, as extras not in the paper, pycocoevalcap's BLEU-1..4,
METEOR, ROUGE-L, CIDEr and rouge-score's unstemmed ROUGE-2. Classification, timestamp and
detection answers get accuracy / temporal IoU (Tab. VI). The shared command
(``vau.eval.evaluate``) calls :class:`ECVAEvaluator`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from vau.errors import ConfigError
from vau.eval.evaluate import TaskEvaluator, load_predictions, log, markdown, predictions_file
from vau.io import atomic_write_text
from vau.metrics import caption_scores, classification_accuracy, parse_segments, temporal_iou
from vau.metrics.ecva_text import ecva_bleu_rouge
from vau.progress import track
from vau.registry import Registry

#: The per-item AnomEval file the evaluator writes next to results.json.
ANOMEVAL_ITEMS = "anomeval_items.jsonl"
#: The per-item GPT-score file (judge answer and score per answer and aspect), with metrics.gpt_score.
GPT_ITEMS = "gpt_items.jsonl"
#: Fields of a references file that replace the prediction's own (by id).
GROUND_TRUTH = ("reference", "anomaly_segments", "key_sentences", "classes")
#: IoU thresholds of the timestamp recall columns.
IOU_THRESHOLDS = (0.3, 0.5, 0.7)
#: Free-text column group of the paper's Tabs. III-V: (column, metric key, scale). BLEU/ROUGE are
#: the reference script's (``ECVA-*``), learned metrics and BLEU in %, GPT on its 0-5 scale,
#: AnomEval already in %.
CAPTION_COLUMNS = (("BLEU", "ECVA-BLEU", 100), ("ROUGE-2", "ECVA-ROUGE-2", 100), ("ROUGE-L", "ECVA-ROUGE-L", 100),
                   ("BLEURT", "BLEURT", 100), ("MoverScore", "MoverScore", 100), ("UniEval", "UniEval", 100),
                   ("GPT", "GPT", 1), ("AnomEval", "AnomEval", 1))
#: Free-text columns not in the paper: pycocoevalcap (PTB tokens, corpus level), rouge-score's
#: ROUGE-2 without stemming (best reference) and the reference script's ROUGE-1.
EXTRA_COLUMNS = (*((f"BLEU-{n}", f"BLEU-{n}", 100) for n in range(1, 5)), ("METEOR", "METEOR", 100),
                 ("ROUGE-L", "ROUGE-L", 100), ("CIDEr", "CIDEr", 100), ("ROUGE-2 (no stem)", "ROUGE-2", 100),
                 ("ROUGE-1", "ECVA-ROUGE-1", 100))
#: Paper columns a config can switch off: (column, config section and key, what the note says).
#: The column is off while that setting is null / false.
_OFF = (("BLEURT", ("metrics", "bleurt"), "metrics.bleurt=null"),
        ("MoverScore", ("metrics", "moverscore"), "metrics.moverscore=null"),
        ("UniEval", ("metrics", "unieval"), "metrics.unieval=null"),
        ("GPT", ("metrics", "gpt_score"), "metrics.gpt_score=false"),
        ("AnomEval", ("anomeval", "enabled"), "anomeval.enabled=false"))
#: Columns of the second table: (column, task, metric key, scale).
TASK_COLUMNS = (("Cls. Acc", "classification", "accuracy", 100), ("mIoU", "timestamp", "mIoU", 100),
                *((f"R@{t}", "timestamp", f"R@{t}", 100) for t in IOU_THRESHOLDS),
                ("Det. Acc", "detection", "accuracy", 100))
_REQUIRED = ("id", "task", "answer")
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


class TaskMetric(NamedTuple):
    """How one task is scored: which rows carry ground truth, and their metrics."""

    scorable: Callable[[dict], bool]
    score: Callable[[list[dict]], dict[str, float]]


TASK_METRICS: Registry[TaskMetric] = Registry("task metric")


def _references(row: dict) -> list[str]:
    ref = row.get("reference")
    return [ref] if isinstance(ref, str) else [r for r in ref or [] if isinstance(r, str)]


def rouge2(predictions: dict[str, str], references: dict[str, list[str]]) -> float:
    """Mean over samples of the ROUGE-2 F1 (Google's rouge-score), best over each sample's references."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rouge2"])
    scores = [scorer.score_multi(references[k], p)["rouge2"].fmeasure for k, p in predictions.items()]
    return sum(scores) / len(scores)


def caption_metrics(rows: list[dict], reference_code_order: bool = True) -> dict[str, float]:
    """The metrics of free-text answers that need no model: n-gram overlaps with the references.

    ``ECVA-BLEU``, ``ECVA-ROUGE-1/2/L`` as ECVA's eval_bleu_rouge.py (:func:`ecva_bleu_rouge`), and
    the extras BLEU-1..4, METEOR, ROUGE-L, CIDEr (:func:`caption_scores`) and ROUGE-2 (:func:`rouge2`).
    """
    preds = {r["id"]: r["answer"] for r in rows}
    refs = {r["id"]: _references(r) for r in rows}
    ecva = ecva_bleu_rouge(preds, refs, reference_code_order)
    return {**caption_scores(preds, refs), "ROUGE-2": rouge2(preds, refs), **{f"ECVA-{k}": v for k, v in ecva.items()}}


def classification_metrics(rows: list[dict]) -> dict[str, float]:
    """Share of answers naming one of the sample's classes (:func:`classification_accuracy`)."""
    return {"accuracy": classification_accuracy({r["id"]: r["answer"] for r in rows},
                                                {r["id"]: r["classes"] for r in rows})}


TASK_METRICS.register("classification", TaskMetric(scorable=lambda r: bool(r.get("classes")),
                                                   score=classification_metrics))


def _gt_segments(row: dict) -> list:
    """Ground-truth anomaly segments: the annotated ones, else those written in the reference."""
    return row.get("anomaly_segments") or parse_segments(" ".join(_references(row)))


def timestamp_metrics(rows: list[dict]) -> dict[str, float]:
    """Mean temporal IoU of parsed answer segments vs ground truth, and recall at IoU thresholds.

    An answer without parseable segments scores IoU 0 and is counted in ``unparseable``.
    """
    parsed = [parse_segments(r["answer"]) for r in rows]
    ious = [temporal_iou(p, _gt_segments(r)) for p, r in zip(parsed, rows)]
    out = {"mIoU": sum(ious) / len(ious)}
    out.update({f"R@{t}": sum(i >= t for i in ious) / len(ious) for t in IOU_THRESHOLDS})
    out["unparseable"] = sum(not p for p in parsed)
    return out


TASK_METRICS.register("timestamp", TaskMetric(scorable=lambda r: bool(_gt_segments(r)), score=timestamp_metrics))


def yes_no(text: str | None) -> bool | None:
    """The leading yes (True) / no (False) of a text, None if it starts with neither."""
    m = _YES_NO.match(text or "")
    return None if m is None else m.group(1).lower() == "yes"


def _reference_yes_no(row: dict) -> bool | None:
    refs = _references(row)
    return yes_no(refs[0]) if refs else None


def detection_metrics(rows: list[dict]) -> dict[str, float]:
    """Share of answers whose leading yes/no equals the reference's (no leading yes/no = wrong)."""
    answers = [yes_no(r["answer"]) for r in rows]
    hits = sum(a is not None and a == _reference_yes_no(r) for a, r in zip(answers, rows))
    return {"accuracy": hits / len(rows), "unparseable": sum(a is None for a in answers)}


TASK_METRICS.register("detection", TaskMetric(scorable=lambda r: _reference_yes_no(r) is not None,
                                              score=detection_metrics))


#: Free-text tasks (``caption_tasks``): every answer with a reference gets the caption metrics.
CAPTION = TaskMetric(scorable=lambda r: bool(_references(r)), score=caption_metrics)


def hard_prompt_stats(rows: list[dict]) -> dict[str, float] | None:
    """Answers sampled by hard prompt and their mean number of chosen key segments (None if none)."""
    chosen = [r["segments"] for r in rows if r.get("sampling") == "hard_prompt" and r.get("segments") is not None]
    if not chosen:
        return None
    return {"n": len(chosen), "mean_segments": sum(map(len, chosen)) / len(chosen)}


def _anomeval(rows: list[dict], judge: Any, cfg: Any) -> tuple[list[dict], dict]:
    """AnomEval of the answers to ``cfg.anomeval.tasks`` that have a reference (the first one)."""
    from vau.metrics.anomeval import AnomEvalItem, anomeval

    items = [AnomEvalItem(id=r["id"], task=r["task"], question=r.get("prompt") or "", prediction=r["answer"],
                          reference=_references(r)[0], key_sentences=list(r.get("key_sentences") or []),
                          prediction_without_anomaly=r.get("answer_no_anomaly"))
             for r in rows if _references(r)]
    return anomeval(items, judge, cfg.anomeval, progress=cfg.progress)


def _learned_scorers(m: Any) -> dict[str, Any]:
    """The learned scorers ``m`` (``cfg.metrics``) turns on; each checks its folder now, loads on first use."""
    from vau.metrics.learned import UNIEVAL_PROMPTS, BleurtScorer, MoverScorer, UniEvalScorer

    scorers: dict[str, Any] = {}
    if m.bleurt:
        scorers["BLEURT"] = BleurtScorer(m.bleurt, "metrics.bleurt", m.device, m.batch_size)
    if m.moverscore:
        scorers["MoverScore"] = MoverScorer(m.moverscore, "metrics.moverscore", m.device, m.batch_size,
                                            idf=m.moverscore_idf)
    if m.unieval:
        unknown = [d for d in m.unieval_dimensions if d not in UNIEVAL_PROMPTS]
        if not m.unieval_dimensions or unknown:
            raise ConfigError(f"metrics.unieval_dimensions={list(m.unieval_dimensions)}: expected some of "
                              f"{', '.join(UNIEVAL_PROMPTS)}")
        scorers["UniEval"] = UniEvalScorer(m.unieval, "metrics.unieval", m.device, m.batch_size)
    return scorers


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


class ECVAEvaluator(TaskEvaluator):
    """Rows grouped by ``task``: the metric of each task; the paper's free-text metrics and AnomEval."""

    reference_fields = GROUND_TRUTH
    sample_columns = ("task", "prompt", "answer", "reference", "S")

    def __init__(self, cfg: Any, out: Path) -> None:
        super().__init__(cfg, out)
        self.judge = None
        if cfg.metrics.gpt_score:
            from vau.metrics.gpt_score import check_aspects

            check_aspects(cfg.metrics.gpt_aspects)
        self.scorers = _learned_scorers(cfg.metrics)
        if cfg.anomeval.enabled or cfg.metrics.gpt_score:
            from vau.eval.judge import build_judge

            # judge.cache_dir wins over out/judge_cache when set; the GPT score shares the anomeval judge
            self.judge = build_judge(cfg.anomeval.judge, out / "judge_cache", "anomeval.judge")

    def free_text_metrics(self, rows: list[dict]) -> tuple[dict[str, Any], list[dict]]:
        """:func:`caption_metrics` plus the learned metrics and the GPT score that are on; and the GPT items.

        Learned metrics and the GPT score read the first reference of each answer (ECVA has one).
        """
        m = self.cfg.metrics
        out: dict[str, Any] = caption_metrics(rows, m.reference_code_order)
        preds = [r["answer"] for r in rows]
        refs = [_references(r)[0] for r in rows]
        if "BLEURT" in self.scorers:
            # eval_BLEURT.py passes references=[model output], candidates=[human answer]
            ref, cand = (preds, refs) if m.reference_code_order else (refs, preds)
            out["BLEURT"] = _mean(self.scorers["BLEURT"].score(references=ref, candidates=cand))
        if "MoverScore" in self.scorers:
            out["MoverScore"] = _mean(self.scorers["MoverScore"].score(references=refs, hypotheses=preds))
        if "UniEval" in self.scorers:
            # eval_unieval.py: src = human answer (the "document"), output = model answer (the "claim")
            dims = self.scorers["UniEval"].score(outputs=preds, sources=refs, dimensions=m.unieval_dimensions)
            out.update({f"UniEval-{d}": _mean(v) for d, v in dims.items()})
            out["UniEval"] = _mean([out[f"UniEval-{d}"] for d in dims])
        items: list[dict] = []
        if m.gpt_score:
            from vau.metrics.gpt_score import gpt_score

            items, summary = gpt_score([{"id": r["id"], "question": r.get("prompt") or "", "reference": ref,
                                         "prediction": r["answer"]} for r, ref in zip(rows, refs)],
                                       self.judge, m.gpt_aspects)
            out.update(summary)
            items = [{"task": rows[0]["task"], **i} for i in items]  # rows: the answers of one task
        return out, items

    def score_model(self, name: str, path: str, refs: dict[str, dict]) -> tuple[dict, list[dict]]:
        """One model's results entry and its (reference-overridden) prediction rows."""
        cfg, judge = self.cfg, self.judge
        rows, skipped = load_predictions(path, _REQUIRED)
        rows = [{**r, **refs.get(r["id"], {})} for r in rows]
        by_task: dict[str, list[dict]] = {}
        for r in rows:
            by_task.setdefault(r["task"], []).append(r)
        anomeval_tasks = set(cfg.anomeval.tasks) if cfg.anomeval.enabled else set()
        tasks: dict[str, dict] = {}
        notes: list[str] = []
        gpt_items: list[dict] = []
        for task in track(list(by_task), len(by_task), f"eval {name}", cfg.progress):
            metric = CAPTION if task in cfg.caption_tasks else (TASK_METRICS.get(task) if task in TASK_METRICS else None)
            if metric is None:
                if task not in anomeval_tasks:
                    notes.append(f"task {task!r}: no metric for it (not in caption_tasks, nor one of "
                                 f"{', '.join(TASK_METRICS.names())}); skipped")
                continue
            scored = [r for r in by_task[task] if metric.scorable(r)]
            if len(scored) < len(by_task[task]):
                notes.append(f"task {task!r}: {len(by_task[task]) - len(scored)} of {len(by_task[task])} answer(s) "
                             "without a usable reference; skipped")
            if scored and metric is CAPTION:
                scores, items = self.free_text_metrics(scored)
                tasks[task] = {**scores, "n": len(scored)}
                gpt_items.extend(items)
            elif scored:
                tasks[task] = {**metric.score(scored), "n": len(scored)}
        per_item, summary = _anomeval(rows, judge, cfg) if cfg.anomeval.enabled else ([], {})
        for task, s in summary.items():
            if task != "all":
                entry = tasks.setdefault(task, {"n": s["n"]})
                entry.update({"AnomEval": s["S"], **{f"AnomEval-{k}": s[k] for k in ("s1", "s2", "s3", "n_s1", "n_s2", "n_s3", "n_scored", "unparseable")}})
        model: dict[str, Any] = {"predictions": str(predictions_file(path)), "skipped_lines": skipped, "tasks": tasks,
                                 "anomeval": summary.get("all"), "anomeval_items": per_item}
        if cfg.metrics.gpt_score:
            model["gpt_items"] = gpt_items
        stats = hard_prompt_stats(rows)
        if stats:
            model["hard_prompt"] = stats
        for note in notes:
            log.warning("%s: %s", name, note)
        if skipped:  # each line was already warned about by load_predictions
            notes.append(f"{skipped} line(s) of {model['predictions']} skipped (not JSON or no id/task/answer)")
        model["notes"] = notes
        return model, rows

    def write(self, results: dict) -> list[Path]:
        """anomeval_items.jsonl (when AnomEval ran) and gpt_items.jsonl (with metrics.gpt_score): one line per judged answer."""
        written = []
        for enabled, field_, name in ((self.cfg.anomeval.enabled, "anomeval_items", ANOMEVAL_ITEMS),
                                      (self.cfg.metrics.gpt_score, "gpt_items", GPT_ITEMS)):
            if enabled:
                items = [{"model": model, **item} for model, m in results["models"].items() for item in m[field_]]
                written.append(atomic_write_text(self.out / name, "".join(json.dumps(i) + "\n" for i in items)))
        return written

    def report(self, results: dict) -> list[str]:
        """The judge's call count (cached answers cost nothing)."""
        if self.judge is None:
            return []
        return [f"judge: {self.judge.calls} call(s), {self.judge.hits} cached answer(s)"]

    def stats(self) -> dict:
        """Judge calls and cache hits (kept in results.json)."""
        return {"judge_calls": self.judge.calls if self.judge else 0,
                "judge_cache_hits": self.judge.hits if self.judge else 0}

    def sample(self, results: dict, name: str, row: dict) -> list[Any]:
        """A wandb table row: task, prompt, answer, references and the AnomEval S of the answer."""
        scores = {i["id"]: i.get("S") for i in results["models"][name]["anomeval_items"]}
        return [row["task"], row.get("prompt"), row["answer"], "\n".join(_references(row)), scores.get(row["id"])]

    @staticmethod
    def tables(results: dict) -> list[str]:
        """The paper's layout (ECVA Tabs. III-VI), one row per model, then the extras.

        Table 1 (Tabs. III-V) has a column group per free-text task: BLEU, ROUGE-2, ROUGE-L (the
        reference script's), BLEURT, MoverScore, UniEval (x100), GPT (0-5) and AnomEval (S, %),
        with a line naming the paper columns switched off; table 2 (Tab. VI) classification
        accuracy, timestamp mIoU and R@0.3/0.5/0.7, detection accuracy (x100); then "Extra metrics
        (not in the paper)": pycocoevalcap's BLEU-1..4, METEOR, ROUGE-L, CIDEr, rouge-score's
        unstemmed ROUGE-2 and the script's ROUGE-1 (x100). Columns no model has are left out.
        """
        config = results.get("config", {})
        free_text = dict.fromkeys([*config.get("caption_tasks", []), *config.get("anomeval", {}).get("tasks", [])])
        groups = [(f"{task} {col}", task, key, scale) for task in free_text for col, key, scale in CAPTION_COLUMNS]
        paper = markdown(results, groups)
        off = [f"{col} ({hint})" for col, (section, key), hint in _OFF if not config.get(section, {}).get(key)]
        if paper and off:
            paper += "\n\nNot computed: " + ", ".join(off) + "."
        extra = markdown(results, [(f"{task} {col}", task, key, scale) for task in free_text
                                   for col, key, scale in EXTRA_COLUMNS])
        if extra:
            extra = "Extra metrics (not in the paper):\n\n" + extra
        laid_out = {*free_text, *(c[1] for c in TASK_COLUMNS)}
        return [paper, markdown(results, TASK_COLUMNS), extra, *TaskEvaluator.tables(results, skip=laid_out)]
