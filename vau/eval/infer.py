"""`vau infer`: an exported model of any family writes predictions, sharded over ranks, resumable.

The family's predictor (``Family.predictor``, else :class:`TaskPredictor`: ``Task.predict`` over
test shards) says what to read and turns batches into records. Lightning's ``predict`` loop
runs it on each device; each rank appends its records to ``<out>/parts/rank<r>.jsonl`` after
every batch (flushed and synced), so a killed or preempted run loses at most one batch and a
re-run skips every id already written. At the end rank 0 merges the parts into
``<out>/predictions.jsonl`` (sorted by id, written atomically) and ``infer.json``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import lightning as L
import torch

from vau.data.shards.manifest import iter_manifest
from vau.errors import ConfigError
from vau.io import atomic_write_text
from vau.registry import import_object

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
PARTS = "parts"


def read_records(folder: Path, skipped: Optional[dict] = None) -> Iterator[dict]:
    """Records of ``predictions.jsonl`` and the rank parts; lines cut by a kill are skipped.

    Videos the workers could not read (``{"skipped": key, "error": ...}`` lines) go to ``skipped``.
    """
    files = [folder / PREDICTIONS, *sorted((folder / PARTS).glob("rank*.jsonl"))]
    for path in files:
        if not path.is_file():
            continue
        for _, rec in iter_manifest(path):  # a line that is not JSON (cut by a kill) is not a dict: skipped
            if isinstance(rec, dict) and "id" in rec:
                yield rec
            elif isinstance(rec, dict) and "skipped" in rec and skipped is not None:
                skipped[rec["skipped"]] = rec["error"]


class _Batches:
    """A loader Lightning iterates as is: its predict loop would swap the sampler of a DataLoader,
    which the shard stream (split by rank and worker itself) does not take."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        return iter(self.loader)


class TaskPredictor:
    """The default predictor: the family's data pipeline reads ``shards`` once (split over ranks and
    workers, bad samples skipped and counted) and ``Task.predict`` makes the records."""

    def __init__(self, cfg: Any, model_cfg: Any, model: torch.nn.Module, done: set[str], task: Any,
                 family: Any) -> None:
        from omegaconf import OmegaConf

        if cfg.shards is None:
            raise ConfigError(f"shards=...: the {model_cfg.model.family} family predicts on test shards")
        self.model, self.task, self.done, self.family = model, task, done, family
        plain = OmegaConf.to_container(model_cfg, resolve=True)
        plain["data"].update(val=[{"shards": cfg.shards}], val_batch_size=cfg.batch_size, num_workers=cfg.num_workers)
        # The export's data section, reading the test shards once (typed again, as the datamodule expects).
        self.data_cfg = OmegaConf.merge(OmegaConf.structured(self.family.config_class(model_cfg.data.pipeline)), plain)

    def loader(self, trainer: L.Trainer) -> Any:
        dm = self.family.build_datamodule(self.data_cfg)
        dm.trainer = trainer  # its rank and world size split the shards
        return _Batches(dm.val_dataloader())

    def start(self) -> None:
        """Nothing to prepare."""

    def predict(self, batch: Any) -> list[dict]:
        from vau.data.loading.stream import META

        batch.pop(META, None)  # the stream's position: not needed, nothing resumes mid-pass here
        with torch.no_grad():
            return [r for r in self.task.predict(self.model, batch) if r["id"] not in self.done]


class InferData(L.LightningDataModule):
    """The rank's predict loader (``predictor.loader(trainer)``), built once the trainer knows the rank."""

    def __init__(self, predictor: Any) -> None:
        super().__init__()
        self.predictor = predictor

    def predict_dataloader(self) -> Any:
        return self.predictor.loader(self.trainer)


class InferModule(L.LightningModule):
    """Runs the predictor on each batch and appends its records (and unreadable items) to the rank's part."""

    def __init__(self, model: torch.nn.Module, predictor: Any, cfg: Any) -> None:
        super().__init__()
        self.model, self.predictor, self.cfg = model, predictor, cfg
        self.bad: list[dict] = []
        self.answered = 0

    def on_predict_start(self) -> None:
        self.predictor.start()
        parts = Path(self.cfg.out) / PARTS
        parts.mkdir(parents=True, exist_ok=True)
        self.part = open(parts / f"rank{self.global_rank}.jsonl", "a", encoding="utf-8")

    def on_predict_end(self) -> None:
        self.part.close()

    def predict_step(self, batch: Any, batch_idx: int) -> int:
        if isinstance(batch, list):  # item lists may hold videos the workers could not read
            for v in batch:
                if "error" in v:
                    log.warning("skipped video %s: %s", v["key"], v["error"])
                    self.part.write(json.dumps({"skipped": v["key"], "error": v["error"]}) + "\n")
                    self.bad.append(v)
            batch = [v for v in batch if "error" not in v]
        records = self.predictor.predict(batch)
        for rec in records:
            self.part.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.part.flush()
        os.fsync(self.part.fileno())  # a preempted node must not lose records it reported
        self.answered += len(records)
        return len(records)


def merge(out: Path, family: Optional[str] = None, model: Optional[str | Path] = None) -> dict:
    """Merges the parts into ``predictions.jsonl`` (first record per id, sorted by id), removes
    the parts, and writes ``infer.json``: the family and export folder (``model``, absolute: `vau
    eval` follows it to the training run) when given, answers and videos skipped (with reasons)
    over all ranks."""
    records: dict[str, dict] = {}
    skipped = {}
    for rec in read_records(out, skipped):
        records.setdefault(rec["id"], rec)
    atomic_write_text(out / PREDICTIONS, "".join(json.dumps(records[k], ensure_ascii=False) + "\n"
                                                  for k in sorted(records)))
    summary = {**({"family": family} if family else {}), **({"model": str(Path(model).resolve())} if model else {}),
               "answers": len(records), "skipped_videos": len(skipped), "skipped": skipped}
    atomic_write_text(out / "infer.json", json.dumps(summary, indent=2) + "\n")
    for part in (out / PARTS).glob("rank*.jsonl"):
        part.unlink()
    return summary


def run_infer(cfg: Any) -> Optional[Path]:
    """Runs `vau infer` (see the module docstring); returns the predictions file on rank 0, else None.

    Raises:
        NotFoundError: No export, shards or videos where the config says.
        ConfigError: Settings that do not fit the model (too many frames, unknown sampling).
    """
    from vau.export import find_export, load_export
    from vau.families import get_family
    from vau.lit.trainer import build_predict_trainer

    out = Path(cfg.out)
    model_cfg, task, model = load_export(cfg.model)
    family = get_family(model_cfg.model.family)
    done = {rec["id"] for rec in read_records(out)}
    if family.predictor is not None:
        predictor = import_object(family.predictor)(cfg, model_cfg, model, done)
    else:
        predictor = TaskPredictor(cfg, model_cfg, model, done, task, family)
    if done:
        log.info("%s: %d records already written; skipping them", out, len(done))
    L.seed_everything(cfg.seed, verbose=False)
    trainer = build_predict_trainer(cfg)
    module = InferModule(model, predictor, cfg)
    t0 = time.perf_counter()
    trainer.predict(module, datamodule=InferData(predictor), return_predictions=False)
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        summary = merge(out, model_cfg.model.family, find_export(cfg.model))
        log.info("%s: %d records, %d videos skipped (see infer.json), %.0f s",
                 out / PREDICTIONS, summary["answers"], summary["skipped_videos"], time.perf_counter() - t0)
        return out / PREDICTIONS
    return None
