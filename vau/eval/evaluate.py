"""`vau eval`: predictions.jsonl files -> per-task metrics, AnomEval, results.json/.md, a wandb table.

Each predictions file (written by ``vau infer``) is one model row. Free-text tasks get the
caption metrics (pycocoevalcap, plus ROUGE-2 from Google's rouge-score) and AnomEval (an LLM
judge whose answers are cached on disk, so a killed evaluation re-run repeats no judge call);
classification, timestamp and detection answers get accuracy / temporal IoU.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from vau.data.shards.manifest import iter_manifest
from vau.io import atomic_write_text
from vau.metrics import (
    caption_scores,
    classification_accuracy,
    parse_segments,
    temporal_iou,
)
from vau.progress import track
from vau.registry import Registry
from vau.errors import BadInputError, ConfigError, NotFoundError

log = logging.getLogger("vau.eval")

#: Files :func:`evaluate` writes into ``cfg.out``.
RESULTS_JSON, RESULTS_MD, ANOMEVAL_ITEMS = "results.json", "results.md", "anomeval_items.jsonl"

#: Fields of a references file that replace the prediction's own (by id).
GROUND_TRUTH = ("reference", "anomaly_segments", "key_sentences", "classes")
#: IoU thresholds of the timestamp recall columns.
IOU_THRESHOLDS = (0.3, 0.5, 0.7)
#: Free-text column group of the paper's tables: (column, metric key, scale).
CAPTION_COLUMNS = (("BLEU", "BLEU-4", 100), ("ROUGE-2", "ROUGE-2", 100), ("ROUGE-L", "ROUGE-L", 100),
                   ("METEOR", "METEOR", 100), ("CIDEr", "CIDEr", 100), ("AnomEval", "AnomEval", 1))
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


def _has_strings(obj: Any, keys: Sequence[str]) -> bool:
    """``obj`` is a JSON object whose ``keys`` hold strings."""
    return isinstance(obj, dict) and all(isinstance(obj.get(k), str) for k in keys)


def predictions_file(path: str | Path) -> Path:
    """The predictions.jsonl of ``path`` (a folder means ``<folder>/predictions.jsonl``).

    Raises:
        FileNotFoundError: No such file.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "predictions.jsonl"
    if not p.is_file():
        raise NotFoundError(f"predictions {path}: no such file (expected a predictions.jsonl or a folder holding one)")
    return p


def load_predictions(path: str | Path, required: Sequence[str] = _REQUIRED) -> tuple[list[dict], int]:
    """Rows of a predictions file, in file order, and the number of lines skipped.

    A line that is not JSON or lacks a string ``required`` field (id, task, answer) is skipped
    with a warning naming file and line (the last line of a killed writer may be cut). A
    repeated id keeps its first row.
    """
    p = predictions_file(path)
    rows: dict[str, dict] = {}
    skipped = 0
    for lineno, obj in iter_manifest(p):
        if not _has_strings(obj, required):
            log.warning("%s:%d: skipped (expected a JSON object with string %s)", p, lineno, ", ".join(required))
            skipped += 1
        elif obj["id"] in rows:
            log.warning("%s:%d: skipped (id %r already seen)", p, lineno, obj["id"])
            skipped += 1
        else:
            rows[obj["id"]] = obj
    return list(rows.values()), skipped


def load_references(path: str | Path) -> dict[str, dict]:
    """Ground truth by id from a JSONL of ``{"id", "reference", ...}`` lines.

    Only the fields in :data:`GROUND_TRUTH` present on a line are kept.

    Raises:
        ValueError: A line that is not a JSON object with a string id.
    """
    out: dict[str, dict] = {}
    for lineno, obj in iter_manifest(path):
        if not _has_strings(obj, ("id",)):
            raise BadInputError(f"references {path}:{lineno}: expected a JSON object with a string id")
        out[obj["id"]] = {k: obj[k] for k in GROUND_TRUTH if k in obj}
    return out


def model_names(paths: Sequence[str], names: Sequence[str]) -> list[str]:
    """Row name per predictions path: ``names`` if given, else the file's folder name.

    Raises:
        ValueError: ``names`` of another length than ``paths``, or a name used twice.
    """
    if names and len(names) != len(paths):
        raise ConfigError(f"names: {len(names)} name(s) for {len(paths)} predictions file(s); give one per file")
    out = list(names) or [predictions_file(p).parent.resolve().name for p in paths]
    twice = [n for n, c in Counter(out).items() if c > 1]
    if twice:
        raise ConfigError(f"row name {twice[0]!r} is used by more than one predictions file; set names=[...] to tell them apart")
    return out


def _references(row: dict) -> list[str]:
    ref = row.get("reference")
    return [ref] if isinstance(ref, str) else [r for r in ref or [] if isinstance(r, str)]


def rouge2(predictions: dict[str, str], references: dict[str, list[str]]) -> float:
    """Mean over samples of the ROUGE-2 F1 (Google's rouge-score), best over each sample's references."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rouge2"])
    scores = [scorer.score_multi(references[k], p)["rouge2"].fmeasure for k, p in predictions.items()]
    return sum(scores) / len(scores)


def caption_metrics(rows: list[dict]) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr (:func:`caption_scores`) and ROUGE-2 of free-text answers."""
    preds = {r["id"]: r["answer"] for r in rows}
    refs = {r["id"]: _references(r) for r in rows}
    return {**caption_scores(preds, refs), "ROUGE-2": rouge2(preds, refs)}


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


def family_scorer(path: str | Path) -> tuple[str, Callable[[list[dict]], dict[str, float]]] | None:
    """``(family, Task.score)`` of the family that wrote ``path`` (``infer.json`` beside it names
    it) when that family scores its own records; None for per-task scoring (AnomShield's)."""
    from vau.families import get_family
    from vau.families.task import Task
    from vau.registry import import_object

    summary = predictions_file(path).parent / "infer.json"
    try:
        family = json.loads(summary.read_text()).get("family") if summary.is_file() else None
    except (OSError, ValueError):
        family = None
    if not family:
        return None
    task = import_object(get_family(family).task)
    return (family, task.score) if task.score.__func__ is not Task.score.__func__ else None


def _evaluate_family(name: str, path: str, family: str, score: Callable) -> tuple[dict, list[dict]]:
    """One model's results entry from its family's own ``Task.score`` (all records as one task)."""
    rows, skipped = load_predictions(path, required=("id",))
    notes = [f"{skipped} line(s) skipped (not JSON or no id)"] if skipped else []
    tasks = {family: {**score(rows), "n": len(rows)}} if rows else {}
    return {"predictions": str(predictions_file(path)), "skipped_lines": skipped, "tasks": tasks,
            "anomeval": None, "anomeval_items": [], "notes": notes}, rows


def _evaluate_model(name: str, path: str, refs: dict[str, dict], judge: Any, cfg: Any) -> tuple[dict, list[dict]]:
    """One model's results entry and its (reference-overridden) prediction rows."""
    own = family_scorer(path)
    if own is not None:
        return _evaluate_family(name, path, *own)
    rows, skipped = load_predictions(path)
    rows = [{**r, **refs.get(r["id"], {})} for r in rows]
    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    anomeval_tasks = set(cfg.anomeval.tasks) if judge is not None else set()
    tasks: dict[str, dict] = {}
    notes: list[str] = []
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
        if scored:
            tasks[task] = {**metric.score(scored), "n": len(scored)}
    per_item, summary = _anomeval(rows, judge, cfg) if judge is not None else ([], {})
    for task, s in summary.items():
        if task != "all":
            entry = tasks.setdefault(task, {"n": s["n"]})
            entry.update({"AnomEval": s["S"], **{f"AnomEval-{k}": s[k] for k in ("s1", "s2", "s3", "n_scored", "unparseable")}})
    model: dict[str, Any] = {"predictions": str(predictions_file(path)), "skipped_lines": skipped, "tasks": tasks,
                             "anomeval": summary.get("all"), "anomeval_items": per_item}
    stats = hard_prompt_stats(rows)
    if stats:
        model["hard_prompt"] = stats
    for note in notes:
        log.warning("%s: %s", name, note)
    if skipped:  # each line was already warned about by load_predictions
        notes.append(f"{skipped} line(s) of {model['predictions']} skipped (not JSON or no id/task/answer)")
    model["notes"] = notes
    return model, rows


def evaluate(cfg: Any) -> dict:
    """Scores every predictions file of ``cfg`` and writes results.json, results.md, anomeval_items.jsonl.

    Args:
        cfg: An :class:`vau.config.eval.EvalConfig` (dataclass or composed DictConfig).

    Returns:
        ``{"models": {name: {"tasks": {task: {metric: value, "n": ...}}, "anomeval_items": [...],
        ...}}, "config": ..., "judge_calls": n, "judge_cache_hits": n}``.

    Raises:
        ValueError: Bad wandb mode, no predictions, bad names or references file.
        FileNotFoundError: A predictions file is missing.
    """
    from omegaconf import OmegaConf

    from vau.config.schema import wandb_mode_of

    wandb_mode = wandb_mode_of(cfg.wandb, "wandb")
    if not cfg.predictions:
        raise ConfigError("predictions: no files given; expected predictions=[run_a/predictions.jsonl,run_b]")
    names = model_names(cfg.predictions, cfg.names)
    refs = load_references(cfg.references) if cfg.references else {}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    judge = None
    if cfg.anomeval.enabled:
        from vau.eval.judge import build_judge

        # judge.cache_dir wins over out/judge_cache when set
        judge = build_judge(cfg.anomeval.judge, out / "judge_cache", "anomeval.judge")
    models: dict[str, dict] = {}
    samples: dict[str, list[dict]] = {}
    for name, path in zip(names, cfg.predictions):
        models[name], rows = _evaluate_model(name, path, refs, judge, cfg)
        samples[name] = rows[:cfg.table_samples]
    results = {"models": models, "config": OmegaConf.to_container(OmegaConf.create(cfg), resolve=True),
               "judge_calls": judge.calls if judge else 0, "judge_cache_hits": judge.hits if judge else 0}
    write_results(results, out)
    if wandb_mode != "disabled":
        log_wandb(results, samples, cfg, wandb_mode)
    return results


def write_results(results: dict, out: str | Path) -> None:
    """Writes results.json, results.md and anomeval_items.jsonl into ``out``, each atomically."""
    out = Path(out)
    atomic_write_text(out / RESULTS_JSON, json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / RESULTS_MD, markdown_table(results))
    items = [{"model": name, **item} for name, m in results["models"].items() for item in m["anomeval_items"]]
    atomic_write_text(out / ANOMEVAL_ITEMS, "".join(json.dumps(i) + "\n" for i in items))


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join(f"| {' | '.join(cells)} |" for cells in lines)


def _cell(value: float | None, scale: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if scale is None else f"{value * scale:.2f}"  # None: a family's own metric, as is


def markdown_table(results: dict) -> str:
    """The paper's layout (ECVA Tab. III-VI): one row per model.

    The first table has a column group per free-text task: BLEU (BLEU-4), ROUGE-2, ROUGE-L,
    METEOR, CIDEr (x100) and AnomEval (S); the second classification accuracy, timestamp mIoU
    and R@0.3/0.5/0.7, detection accuracy (x100). Columns no model has are left out; a model
    without a value shows ``-``.
    """
    models = results["models"]
    config = results.get("config", {})
    free_text = dict.fromkeys([*config.get("caption_tasks", []), *config.get("anomeval", {}).get("tasks", [])])

    def value(m: dict, task: str, key: str) -> float | None:
        return m["tasks"].get(task, {}).get(key)

    tables = []
    groups = [(f"{task} {col}", task, key, scale) for task in free_text for col, key, scale in CAPTION_COLUMNS]
    laid_out = {*free_text, *(c[1] for c in TASK_COLUMNS)}
    # Families that score their own records (Task.score): one column per metric, as computed.
    own = sorted({(task, key) for m in models.values() for task, metrics in m["tasks"].items()
                  if task not in laid_out for key in metrics if key != "n"})
    for columns in (groups, TASK_COLUMNS, [(f"{task} {key}", task, key, None) for task, key in own]):
        columns = [c for c in columns if any(value(m, c[1], c[2]) is not None for m in models.values())]
        if columns:
            rows = [[name, *(_cell(value(m, task, key), scale) for _, task, key, scale in columns)]
                    for name, m in models.items()]
            tables.append(_md(["Model", *(c[0] for c in columns)], rows))
    return "\n\n".join(tables) + "\n"


def summary_metrics(results: dict) -> dict[str, float]:
    """Flat ``{"<model>/<task>/<metric>": value}`` of every numeric task metric (for wandb)."""
    return {f"{name}/{task}/{k}": v for name, m in results["models"].items() for task, metrics in m["tasks"].items()
            for k, v in metrics.items() if isinstance(v, (int, float))}


def log_wandb(results: dict, samples: dict[str, list[dict]], cfg: Any, mode: str) -> None:
    """One wandb run (``mode``, files under ``<out>/wandb``): summary metrics and a sample table."""
    import wandb

    scores = {(name, i["id"]): i.get("S") for name, m in results["models"].items() for i in m["anomeval_items"]}
    table = wandb.Table(columns=["model", "id", "task", "prompt", "answer", "reference", "S"])
    for name, rows in samples.items():
        for r in rows:
            table.add_data(name, r["id"], r["task"], r.get("prompt"), r["answer"], "\n".join(_references(r)),
                           scores.get((name, r["id"])))
    run = wandb.init(project=cfg.wandb_project, mode=mode, dir=cfg.out, name=Path(cfg.out).resolve().name,
                     job_type="eval", config=results["config"])
    try:
        run.log({**summary_metrics(results), "judge_calls": results["judge_calls"], "samples": table})
    finally:
        run.finish()
