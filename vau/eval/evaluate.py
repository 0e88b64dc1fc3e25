"""`vau eval`: predictions.jsonl files -> metrics, results.json/.md, a wandb table, for any family.

Each predictions file (written by ``vau infer``) is one model row. The family that wrote them
(``infer.json`` names it, or ``family=``) scores them with its evaluator (``Family.evaluator``):
by default :class:`TaskEvaluator`, the family's ``Task.score`` over all records; AnomShield's
ECVA evaluator (per-task metrics, AnomEval) is in ``vau.families.anomshield.evaluate``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vau.data.shards.manifest import iter_manifest
from vau.errors import BadInputError, ConfigError, NotFoundError
from vau.io import atomic_write_text

log = logging.getLogger("vau.eval")

#: Files :func:`evaluate` writes into ``cfg.out`` (the family's evaluator may add more).
RESULTS_JSON, RESULTS_MD = "results.json", "results.md"


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


def load_predictions(path: str | Path, required: Sequence[str] = ("id",)) -> tuple[list[dict], int]:
    """Rows of a predictions file, in file order, and the number of lines skipped.

    A line that is not JSON or lacks a string ``required`` field (e.g. id) is skipped
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


def load_references(path: str | Path, fields: Sequence[str] | None = None) -> dict[str, dict]:
    """Ground truth by id from a JSONL of ``{"id", "reference", ...}`` lines.

    Only ``fields`` present on a line are kept (None: every field but id).

    Raises:
        ValueError: A line that is not a JSON object with a string id.
    """
    out: dict[str, dict] = {}
    for lineno, obj in iter_manifest(path):
        if not _has_strings(obj, ("id",)):
            raise BadInputError(f"references {path}:{lineno}: expected a JSON object with a string id")
        out[obj["id"]] = {k: v for k, v in obj.items() if k != "id" and (fields is None or k in fields)}
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


class TaskEvaluator:
    """Scores one predictions file per model row; families override what differs.

    This default reads records with an ``id`` and puts ``Task.score(records)`` of the family
    in one task row named after the family; its table has one column per metric, as computed.
    """

    reference_fields: Sequence[str] | None = None
    """Fields a ``references=`` file may replace (None: all of them)."""
    sample_columns: Sequence[str] = ("record",)
    """Columns of the wandb sample table after model and id."""

    def __init__(self, cfg: Any, out: Path) -> None:
        self.cfg, self.out = cfg, out
        self.family = cfg.family

    def score_model(self, name: str, path: str, refs: dict[str, dict]) -> tuple[dict, list[dict]]:
        """One model's results entry (``{"tasks": {task: {metric: value, "n"}}, "notes": [...], ...}``)
        and its rows."""
        from vau.families import get_family
        from vau.registry import import_object

        rows, skipped = load_predictions(path)
        rows = [{**r, **refs.get(r["id"], {})} for r in rows]
        score = import_object(get_family(self.family).task).score
        tasks = {self.family: {**score(rows), "n": len(rows)}} if rows else {}
        notes = [f"{skipped} line(s) skipped (not JSON or no id)"] if skipped else []
        return {"predictions": str(predictions_file(path)), "skipped_lines": skipped, "tasks": tasks,
                "notes": notes}, rows

    def write(self, results: dict) -> list[Path]:
        """Files beyond results.json/.md (none here)."""
        return []

    def report(self, results: dict) -> list[str]:
        """Lines `vau eval` prints under the table (none here)."""
        return []

    def stats(self) -> dict:
        """Counters kept in results.json (none here)."""
        return {}

    def sample(self, results: dict, name: str, row: dict) -> list[Any]:
        """A wandb table row for ``row`` (after model and id): the record as JSON."""
        return [json.dumps({k: v for k, v in row.items() if k != "id"}, ensure_ascii=False)]

    @staticmethod
    def tables(results: dict, skip: Sequence[str] = ()) -> list[str]:
        """One table: a column per (task, metric) no other table shows, values as computed."""
        own = sorted({(task, key) for m in results["models"].values() for task, metrics in m["tasks"].items()
                      if task not in skip for key in metrics if key != "n"})
        return [markdown(results, [(f"{task} {key}", task, key, None) for task, key in own])]


def markdown(results: dict, columns: Sequence[tuple[str, str, str, float | None]]) -> str:
    """A markdown table, one row per model, of ``(header, task, metric key, scale)`` columns.

    Columns no model has are left out (empty string if none is left); a model without a value
    shows ``-``; a scale multiplies (x100 for %), None prints the value as computed.
    """
    models = results["models"]

    def value(m: dict, task: str, key: str) -> float | None:
        return m["tasks"].get(task, {}).get(key)

    columns = [c for c in columns if any(value(m, c[1], c[2]) is not None for m in models.values())]
    if not columns:
        return ""
    lines = [["Model", *(c[0] for c in columns)], ["---"] * (len(columns) + 1),
             *([name, *(_cell(value(m, task, key), scale) for _, task, key, scale in columns)]
               for name, m in models.items())]
    return "\n".join(f"| {' | '.join(cells)} |" for cells in lines)


def _cell(value: float | None, scale: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if scale is None else f"{value * scale:.2f}"


def evaluator_class(family: str) -> type:
    """The evaluator class of ``family`` (``Family.evaluator``)."""
    from vau.families import get_family
    from vau.registry import import_object

    return import_object(get_family(family).evaluator)


def evaluate(cfg: Any) -> dict:
    """Scores every predictions file of ``cfg`` and writes results.json, results.md (+ the evaluator's files).

    Args:
        cfg: An :class:`vau.config.eval.EvalConfig` of the family (a composed DictConfig).

    Returns:
        What results.json holds: ``{"family", "models": {name: {"tasks": {task: {metric: value,
        "n": ...}}, ...}}, "config", "files": [paths written], "report": [lines for the user],
        **evaluator stats}``.

    Raises:
        ConfigError: Bad wandb mode, no predictions, bad names.
        NotFoundError, BadInputError: A predictions or references file missing or malformed.
    """
    from omegaconf import OmegaConf

    from vau.config.schema import wandb_mode_of
    from vau.families import predictions_family

    wandb_mode = wandb_mode_of(cfg.wandb, "wandb")
    if not cfg.predictions:
        raise ConfigError("predictions: no files given; expected predictions=[run_a/predictions.jsonl,run_b]")
    names = model_names(cfg.predictions, cfg.names)
    config = OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
    if not config.get("family"):
        config["family"] = predictions_family(cfg.predictions) or "anomshield"
    cfg = OmegaConf.create(config)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    evaluator = evaluator_class(cfg.family)(cfg, out)
    refs = load_references(cfg.references, evaluator.reference_fields) if cfg.references else {}
    models: dict[str, dict] = {}
    samples: dict[str, list[dict]] = {}
    for name, path in zip(names, cfg.predictions):
        models[name], rows = evaluator.score_model(name, path, refs)
        samples[name] = rows[:cfg.table_samples]
    results = {"family": cfg.family, "models": models, "config": config, **evaluator.stats()}
    extra = evaluator.write(results)
    results["files"] = [str(out / RESULTS_JSON), str(out / RESULTS_MD), *map(str, extra)]
    results["report"] = evaluator.report(results)
    atomic_write_text(out / RESULTS_MD, markdown_table(results))
    atomic_write_text(out / RESULTS_JSON, json.dumps(results, indent=2) + "\n")
    if wandb_mode != "disabled":
        log_wandb(results, samples, evaluator, cfg, wandb_mode)
    return results


def markdown_table(results: dict) -> str:
    """results.md: the tables of the family's evaluator (ECVA's are the paper's layout)."""
    tables = [t for t in evaluator_class(results.get("family") or "anomshield").tables(results) if t]
    return "\n\n".join(tables) + "\n"


def summary_metrics(results: dict) -> dict[str, float]:
    """Flat ``{"<model>/<task>/<metric>": value}`` of every numeric task metric (for wandb)."""
    return {f"{name}/{task}/{k}": v for name, m in results["models"].items() for task, metrics in m["tasks"].items()
            for k, v in metrics.items() if isinstance(v, (int, float))}


def training_run(predictions: str | Path) -> dict | None:
    """The export and training run behind a predictions file, as its ``infer.json`` names them.

    Returns:
        ``{"export": absolute export folder, "run_dir", "run_id" (None: no wandb id kept),
        "group", "project", "entity"}`` (the wandb settings of the export's ``config.yaml``),
        or None when ``infer.json`` names no export (hand-written or older predictions) or the
        export's config is gone.
    """
    import yaml

    summary = predictions_file(predictions).parent / "infer.json"
    try:
        export = Path(json.loads(summary.read_text())["model"])
        body = yaml.safe_load((export / "config.yaml").read_text()) or {}
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None
    run, w = body.get("run") or {}, (body.get("logger") or {}).get("wandb") or {}
    # An export lives in its run dir (export/, best/, export.step-N/); run.dir may be relative
    # to where training ran, so the export's parent is asked first.
    dirs = [export.parent, *([Path(run["dir"])] if run.get("dir") else [])]
    run_dir = next((d for d in dirs if (d / "wandb" / "run_id").is_file()), None)
    if run_dir is None and (export.parent / "config.yaml").is_file():
        run_dir = export.parent  # a run dir without wandb (logger=none): still the run it came from
    has_id = run_dir is not None and (run_dir / "wandb" / "run_id").is_file()
    return {"export": str(export), "run_dir": str(run_dir.resolve()) if run_dir else None,
            "run_id": (run_dir / "wandb" / "run_id").read_text().strip() if has_id else None,
            "group": w.get("group"), "project": w.get("project"), "entity": w.get("entity")}


def _shared(links: dict[str, dict | None], key: str) -> Any:
    """``key`` of every model's training run when they all have the same one, else None."""
    values = {(link or {}).get(key) for link in links.values()}
    return values.pop() if len(values) == 1 else None


def wandb_link(cfg: Any, names: Sequence[str]) -> tuple[dict, dict]:
    """``(wandb.init keyword arguments, config entries)`` tying the eval run to the training runs.

    The eval run joins the training runs' wandb group (and project and entity: a group lives
    in one project) when all evaluated models share one; else no group, said in a log line.
    The config names each model's export folder (``export``) and training run (wandb id
    ``training_run``, ``training_run_dir``, ``training_project``): plain values for one model,
    by model name for several.
    """
    links = {name: training_run(path) for name, path in zip(names, cfg.predictions)}
    group = _shared(links, "group")
    if group is None:
        why = ("the training runs are in different wandb groups (or none)" if len(links) > 1 else
               "its training run has no wandb group (logger.wandb.group)" if links[names[0]] else
               "infer.json names no export to follow to a training run")
        log.info("vau eval: the eval run joins no wandb group: %s", why)
    else:
        log.info("vau eval: the eval run joins wandb group %s, its training run's", group)
    project = cfg.wandb_project or _shared(links, "project") or "vau"
    init = {"group": group, "project": project, "entity": _shared(links, "entity")}
    entries = {key: {name: (link or {}).get(field) for name, link in links.items()}
               for key, field in (("export", "export"), ("training_run", "run_id"), ("training_run_dir", "run_dir"),
                                  ("training_project", "project"))}
    if len(names) == 1:
        entries = {key: by_name[names[0]] for key, by_name in entries.items()}
    return init, entries


def log_wandb(results: dict, samples: dict[str, list[dict]], evaluator: TaskEvaluator, cfg: Any, mode: str) -> None:
    """One wandb run (``mode``, files under ``<out>/wandb``): summary metrics and a sample table,
    in the training run's group with the evaluated export in its config (:func:`wandb_link`)."""
    import wandb

    table = wandb.Table(columns=["model", "id", *evaluator.sample_columns])
    for name, rows in samples.items():
        for r in rows:
            table.add_data(name, r["id"], *evaluator.sample(results, name, r))
    init, link = wandb_link(cfg, list(results["models"]))
    run = wandb.init(**init, mode=mode, dir=cfg.out, name=Path(cfg.out).resolve().name,
                     job_type="eval", config={**results["config"], **link})
    try:
        if run.project_url:  # online: the training runs' pages (an offline run has no URL; its id links)
            def url(run_id: str | None, project: str | None) -> str | None:
                return f"{run.project_url}/runs/{run_id}" if run_id and project == run.project else None

            ids, projects = link["training_run"], link["training_project"]
            run.config.update({"training_run_url": url(ids, projects) if not isinstance(ids, dict)
                               else {n: url(ids[n], projects[n]) for n in ids}})
        counters = {k: v for k, v in evaluator.stats().items() if isinstance(v, (int, float))}
        run.log({**summary_metrics(results), **counters, "samples": table})
    finally:
        run.finish()
