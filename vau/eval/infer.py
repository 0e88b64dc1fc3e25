"""`vau infer`: an exported AnomShield model answers questions about test videos.

Data workers read the videos (test shards, or a folder), pick the questions not answered
yet, and decode every frame the :class:`~vau.eval.hard_prompt.FramePlan` may use. Lightning's
``predict`` loop runs the model on each device; each rank appends its answers to
``<out>/parts/rank<r>.jsonl`` after every batch (flushed and synced), so a killed or
preempted run loses at most one batch and a re-run skips every id already written. At the
end rank 0 merges the parts into ``<out>/predictions.jsonl`` (sorted by id, written atomically).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vau.data.manifest import iter_manifest
from vau.eval.hard_prompt import FramePlan, dense_frames, plan_frames, top_segments
from vau.io import atomic_write_text
from vau.registry import Registry
from vau.errors import BadInputError, ConfigError, NotFoundError

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.jsonl"
PARTS = "parts"


def _segments_text(segments: Sequence[Sequence[float]]) -> str:
    return "; ".join(f"from {s:.1f} s to {e:.1f} s" for s, e in segments)


REFERENCES: Registry[Callable[[dict], Optional[str]]] = Registry("task reference")
"""task -> annotation -> reference answer (None: the annotation cannot answer it, the task is skipped)."""
REFERENCES.register("description", lambda a: (a.get("anomaly") or {}).get("description") or a.get("caption"))
REFERENCES.register("cause", lambda a: (a.get("anomaly") or {}).get("cause"))
REFERENCES.register("result", lambda a: (a.get("anomaly") or {}).get("effect"))
REFERENCES.register("classification",
                    lambda a: ", ".join((a.get("anomaly") or {}).get("classes") or []) or
                    ("None" if "anomaly" in a else None))
REFERENCES.register("timestamp", lambda a: _segments_text((a.get("anomaly") or {}).get("segments") or []) or None)
REFERENCES.register("detection", lambda a: None if "anomaly" not in a else
                    ("Yes." if a["anomaly"].get("abnormal") else "No."))


def questions_for(key: str, annotation: Optional[dict], cfg: Any, asked: Optional[list[dict]] = None) -> list[dict]:
    """The questions of one video: ``{"id", "task", "prompt", "reference"}`` each.

    Args:
        key: Video key.
        annotation: The video's annotation (None for a bare video).
        cfg: The ``InferConfig``.
        asked: Explicit questions for this video (from ``cfg.questions``), used as given.
    """
    if asked is not None:
        return asked
    out = []
    if cfg.questions_from == "conversations":
        conv = (annotation or {}).get("conversations") or []
        for turn in range(0, len(conv) - 1, 2):
            task = conv[turn].get("task", "qa")
            if task in cfg.tasks:
                out.append({"id": f"{key}#{turn // 2}", "task": task, "prompt": conv[turn]["value"],
                            "reference": conv[turn + 1]["value"]})
        return out
    if cfg.questions_from != "prompts":
        raise ConfigError(f"questions_from={cfg.questions_from!r}: expected prompts or conversations")
    for task in cfg.tasks:
        if task not in cfg.task_prompts:
            raise ConfigError(f"tasks: no task_prompts.{task} question template (conf/infer/ecva.yaml has the ECVA ones)")
        reference = REFERENCES.get(task)(annotation) if annotation is not None and task in REFERENCES else None
        if annotation is not None and reference is None:
            continue  # e.g. no cause for a normal video: nothing to ask or score
        out.append({"id": f"{key}#{task}", "task": task, "prompt": cfg.task_prompts[task], "reference": reference})
    return out


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


def _explicit_questions(path: str) -> dict[str, list[dict]]:
    by_video: dict[str, list[dict]] = defaultdict(list)
    for n, rec in iter_manifest(path):
        if isinstance(rec, ValueError):
            raise BadInputError(f"{path}:{n}: {rec}")
        if not isinstance(rec, dict) or not isinstance(rec.get("video"), str) or not isinstance(rec.get("question"), str):
            raise BadInputError(f'{path}:{n}: expected {{"video": ..., "question": ...}} (optional task, id, reference)')
        video = Path(rec["video"]).stem
        by_video[video].append({"id": rec.get("id") or f"{video}#{n}", "task": rec.get("task", "qa"),
                                "prompt": rec["question"], "reference": rec.get("reference")})
    return by_video


class VideoQuestions(IterableDataset):
    """One item per video with unanswered questions: its frames (all the plan needs) and questions.

    Split over ranks, then workers: by shard (or file) when there are enough, else by sample.
    A video that cannot be read comes out as ``{"key", "error"}`` so the main process counts it.
    """

    def __init__(self, cfg: Any, model_cfg: Any, done: set[str], rank: int = 0, world: int = 1) -> None:
        if (cfg.shards is None) == (cfg.videos is None):
            raise ConfigError("set exactly one of shards=... (test shards) or videos=... (a folder of videos)")
        self.cfg, self.done, self.rank, self.world = cfg, done, rank, world
        decode = model_cfg.data.decode
        from vau.data.video import processor_settings

        size, self.mean, self.std = processor_settings(decode.processor)
        self.size = decode.size or size
        self.asked = _explicit_questions(cfg.questions) if cfg.questions else None
        if cfg.shards is not None:
            from vau.data.shardlist import PipeNotAllowed, expand_shards

            try:
                self.units = expand_shards(cfg.shards)
            except PipeNotAllowed as e:  # infer has no allow_pipe switch: its shard spec never runs a command
                raise PipeNotAllowed(e.url, "vau infer reads paths, http(s):// and fsspec URLs only") from None
        else:
            from vau.data.manifest import VIDEO_EXTS

            folder = Path(cfg.videos)
            if not folder.is_dir():
                raise NotFoundError(f"videos={folder}: no such folder")
            self.units = sorted(p for p in folder.iterdir() if p.suffix.lstrip(".").lower() in VIDEO_EXTS)
            if not self.units:
                raise NotFoundError(f"videos={folder}: no video files ({', '.join(VIDEO_EXTS)})")

    def _videos(self, unit: Any) -> Iterator[tuple[str, Any, Optional[dict]] | dict]:
        """(key, video source, annotation) per video of a shard or file; errors as dicts."""
        if self.cfg.shards is None:
            yield unit.stem, unit, None
            return
        from vau.data.annotation import parse_annotation
        from vau.data.manifest import VIDEO_EXTS
        from vau.data.tario import BadSample, iter_shard

        for s in iter_shard(unit):
            if isinstance(s, BadSample):
                yield {"key": s.key, "error": f"{s.url}: {s.reason}"}
                continue
            video = next((s[e] for e in VIDEO_EXTS if e in s), None)
            if video is None or "json" not in s:
                yield {"key": s["__key__"], "error": f"{unit}: sample {s['__key__']} needs a video and a json member"}
                continue
            try:
                yield s["__key__"], video, parse_annotation(s["json"])
            except ValueError as e:
                yield {"key": s["__key__"], "error": f"{unit}: {e}"}

    def _mine(self) -> Iterator[Any]:
        info = get_worker_info()
        nw, wid = (info.num_workers, info.id) if info is not None else (1, 0)
        slots, slot = self.world * nw, self.rank * nw + wid
        if len(self.units) >= slots:
            for unit in self.units[slot::slots]:
                yield from self._videos(unit)
            return
        n = 0
        for unit in self.units:
            for item in self._videos(unit):
                if n % slots == slot:
                    yield item
                n += 1

    def __iter__(self) -> Iterator[dict]:
        for item in self._mine():
            if isinstance(item, dict):
                yield item
                continue
            key, video, annotation = item
            asked = self.asked.get(key, []) if self.asked is not None else None
            questions = [q for q in questions_for(key, annotation, self.cfg, asked) if q["id"] not in self.done]
            if not questions:
                continue
            try:
                yield self._decode(key, video, annotation, questions)
            except (ValueError, IndexError, OSError) as e:  # VideoDecodeError is a ValueError
                yield {"key": key, "error": f"{type(e).__name__}: {' '.join(str(e).split())}"}

    def _decode(self, key: str, video: Any, annotation: Optional[dict], questions: list[dict]) -> dict:
        from vau.data.video import decode_clip, resize_normalize

        anomaly = (annotation or {}).get("anomaly") or {}
        plan: list[FramePlan] = []

        def pick(num: int, fps: float) -> list[int]:
            plan.append(plan_frames(num, fps, self.cfg, anomaly.get("segments")))
            return plan[0].needed()

        frames, index, _, _ = decode_clip(video, pick)
        return {"key": key, "questions": questions, "plan": plan[0], "index": index,
                "frames": resize_normalize(frames, self.size, self.mean, self.std),
                "meta": {"anomaly_segments": anomaly.get("segments"), "classes": anomaly.get("classes"),
                         "key_sentences": (annotation or {}).get("key_sentences")}}


class InferData(L.LightningDataModule):
    """Builds the rank's :class:`VideoQuestions` loader once the trainer knows the rank."""

    def __init__(self, cfg: Any, model_cfg: Any, done: set[str]) -> None:
        super().__init__()
        self.cfg, self.model_cfg, self.done = cfg, model_cfg, done

    def predict_dataloader(self) -> DataLoader:
        ds = VideoQuestions(self.cfg, self.model_cfg, self.done, self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(ds, batch_size=self.cfg.batch_size, collate_fn=list, num_workers=self.cfg.num_workers,
                          persistent_workers=False)


def _clip(item: dict, indices: Sequence[int]) -> torch.Tensor:
    pos = {f: i for i, f in enumerate(item["index"])}
    return item["frames"][[pos[f] for f in indices]]


class InferModule(L.LightningModule):
    """Runs the answering passes of :mod:`vau.eval.hard_prompt` and appends records per batch."""

    def __init__(self, model: torch.nn.Module, model_cfg: Any, tok: Any, cfg: Any, name: str) -> None:
        super().__init__()
        self.model, self.model_cfg, self.tok, self.cfg, self.name = model, model_cfg, tok, cfg, name
        self.gen = dict(cfg.generation)
        self.ranker: Optional[Callable] = None
        self.bad: list[dict] = []
        self.answered = 0

    def on_predict_start(self) -> None:
        if self.cfg.sampling == "hard_prompt":
            from vau.eval.hard_prompt import RANKERS

            self.ranker = RANKERS.get(self.cfg.hard_prompt.ranker)(self.cfg.hard_prompt, Path(self.cfg.out))
        elif self.cfg.sampling != "uniform":
            raise ConfigError(f"sampling={self.cfg.sampling!r}: expected hard_prompt or uniform")
        parts = Path(self.cfg.out) / PARTS
        parts.mkdir(parents=True, exist_ok=True)
        self.part = open(parts / f"rank{self.global_rank}.jsonl", "a", encoding="utf-8")

    def on_predict_end(self) -> None:
        self.part.close()

    def _generate(self, jobs: list[tuple[str, torch.Tensor]], max_new_tokens: Optional[int] = None) -> list[str]:
        """Answers (question, clip) jobs in chunks of ``batch_size`` clips with equal frame counts."""
        from vau.eval.generate import generate_batch

        gen = dict(self.gen, **({"max_new_tokens": max_new_tokens} if max_new_tokens else {}))
        out: list[Optional[str]] = [None] * len(jobs)
        by_len: dict[int, list[int]] = defaultdict(list)
        for i, (_, clip) in enumerate(jobs):
            by_len[clip.shape[0]].append(i)
        for idx in by_len.values():
            for start in range(0, len(idx), self.cfg.batch_size):
                chunk = idx[start:start + self.cfg.batch_size]
                answers = generate_batch(self.model, self.model_cfg.model.template, self.tok,
                                         [jobs[i][0] for i in chunk], torch.stack([jobs[i][1] for i in chunk]), gen)
                for i, a in zip(chunk, answers):
                    out[i] = a
        return out  # type: ignore[return-value]

    def predict_step(self, batch: list[dict], batch_idx: int) -> int:
        hp = self.cfg.hard_prompt
        videos = [v for v in batch if "error" not in v]
        for v in batch:
            if "error" in v:
                log.warning("skipped video %s: %s", v["key"], v["error"])
                self.part.write(json.dumps({"skipped": v["key"], "error": v["error"]}) + "\n")
                self.bad.append(v)
        records, answer_jobs, probe_jobs = [], [], []
        captions: dict[str, list[str]] = {}
        if self.ranker is not None:
            seg_jobs = [(hp.caption_prompt, _clip(v, seg)) for v in videos for seg in v["plan"].coarse]
            flat = self._generate(seg_jobs, hp.caption_max_new_tokens)
            for n, v in enumerate(videos):
                captions[v["key"]] = flat[n * hp.segments:(n + 1) * hp.segments]
        for v in videos:
            plan: FramePlan = v["plan"]
            for q in v["questions"]:
                rec = {"id": q["id"], "video": v["key"], "task": q["task"], "prompt": q["prompt"], "answer": None,
                       "reference": q["reference"], "fps": plan.fps, "num_frames": plan.num_frames,
                       "sampling": self.cfg.sampling, "model": self.name, **v["meta"]}
                frames = plan.uniform
                if self.ranker is not None:
                    scores = self.ranker(_question_text(q["prompt"]), captions[v["key"]])
                    rec.update(segment_captions=captions[v["key"]], segment_scores=scores)
                    if scores is None:
                        rec["sampling"] = "uniform (ranking unparseable)"
                    else:
                        chosen = top_segments(scores, hp.top_k)
                        frames = dense_frames(plan, chosen)
                        rec["segments"] = [plan.seconds(s) for s in chosen]
                rec["frames"] = list(frames)
                answer_jobs.append((q["prompt"], _clip(v, frames)))
                if plan.no_anomaly is not None:
                    probe_jobs.append((len(records), (q["prompt"], _clip(v, plan.no_anomaly))))
                records.append(rec)
        for rec, ans in zip(records, self._generate(answer_jobs)):
            rec["answer"] = ans
        for (i, _), ans in zip(probe_jobs, self._generate([j for _, j in probe_jobs])):
            records[i]["answer_no_anomaly"] = ans
        for rec in records:
            self.part.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.part.flush()
        os.fsync(self.part.fileno())  # a preempted node must not lose answers it reported
        self.answered += len(records)
        return len(records)


def _question_text(prompt: str) -> str:
    return prompt.replace("<video>", "").replace("<image>", "").strip()


def merge(out: Path) -> dict:
    """Merges the parts into ``predictions.jsonl`` (first record per id, sorted by id), removes
    the parts, and writes ``infer.json``: answers and videos skipped (with reasons) over all ranks."""
    records: dict[str, dict] = {}
    skipped = {}
    for rec in read_records(out, skipped):
        records.setdefault(rec["id"], rec)
    atomic_write_text(out / PREDICTIONS, "".join(json.dumps(records[k], ensure_ascii=False) + "\n"
                                                  for k in sorted(records)))
    summary = {"answers": len(records), "skipped_videos": len(skipped), "skipped": skipped}
    atomic_write_text(out / "infer.json", json.dumps(summary, indent=2) + "\n")
    for part in (out / PARTS).glob("rank*.jsonl"):
        part.unlink()
    return summary


def run_infer(cfg: Any) -> Optional[Path]:
    """Runs `vau infer` (see the module docstring); returns the predictions file on rank 0, else None.

    Raises:
        FileNotFoundError: No export, shards or videos where the config says.
        ValueError: Settings that do not fit the model (too many frames, unknown sampling).
    """
    from vau.data.tokenizer import build_tokenizer
    from vau.eval.generate import load_export

    out = Path(cfg.out)
    model_cfg, model = load_export(cfg.model)
    hp = cfg.hard_prompt
    longest = max(cfg.frames, hp.top_k * hp.dense_frames if cfg.sampling == "hard_prompt" else 0)
    if longest > model_cfg.model.max_frames:
        raise ConfigError(f"{longest} frames per answer exceed the model's max_frames={model_cfg.model.max_frames} "
                         "(lower frames or hard_prompt.top_k x hard_prompt.dense_frames)")
    tok = build_tokenizer(model_cfg.model.llm)
    done = {rec["id"] for rec in read_records(out)}
    if done:
        log.info("%s: %d answers already written; skipping them", out, len(done))
    L.seed_everything(cfg.seed, verbose=False)
    devices: Any = cfg.devices if not str(cfg.devices).isdigit() else int(cfg.devices)
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=devices, num_nodes=cfg.num_nodes,
                        precision=cfg.precision, logger=False, enable_checkpointing=False,
                        enable_progress_bar=cfg.progress if cfg.progress is not None else sys.stderr.isatty(),
                        enable_model_summary=False)
    module = InferModule(model, model_cfg, tok, cfg, name=str(cfg.model))
    t0 = time.perf_counter()
    trainer.predict(module, datamodule=InferData(cfg, model_cfg, done), return_predictions=False)
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        summary = merge(out)
        log.info("%s: %d answers, %d videos skipped (see infer.json), %.0f s",
                 out / PREDICTIONS, summary["answers"], summary["skipped_videos"], time.perf_counter() - t0)
        return out / PREDICTIONS
    return None
