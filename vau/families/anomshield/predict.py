"""`vau infer` for AnomShield: ECVA's questions, hard-prompt key-segment sampling, batched generation.

Data workers read the videos (test shards, or a folder), pick the questions not answered yet and
decode every frame the :class:`~vau.families.anomshield.hard_prompt.FramePlan` may use; the
predictor runs the caption, ranking and answering passes of ECVA §IV-A on each rank. Sharding
over ranks, per-rank resumable parts and the merge are ``vau.eval.infer``'s.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vau.data.shards.manifest import iter_manifest
from vau.errors import BadInputError, ConfigError, NotFoundError
from vau.families.anomshield.hard_prompt import FramePlan, dense_frames, plan_frames, top_segments
from vau.registry import Registry

log = logging.getLogger(__name__)


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
        from vau.data.media.video import frame_geometry

        self.size, self.mean, self.std = frame_geometry(decode)
        self.asked = _explicit_questions(cfg.questions) if cfg.questions else None
        if cfg.shards is not None:
            from vau.data.shards.shardlist import PipeNotAllowed, expand_shards

            try:
                self.units = expand_shards(cfg.shards)
            except PipeNotAllowed as e:  # infer has no allow_pipe switch: its shard spec never runs a command
                raise PipeNotAllowed(e.url, "vau infer reads paths, http(s):// and fsspec URLs only") from None
        else:
            from vau.data.shards.manifest import VIDEO_EXTS

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
        from vau.data.shards.annotation import parse_annotation
        from vau.data.shards.manifest import VIDEO_EXTS
        from vau.data.shards.tario import BadSample, iter_shard

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
        from vau.data.media.video import decode_clip, resize_normalize

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


def _clip(item: dict, indices: Sequence[int]) -> torch.Tensor:
    pos = {f: i for i, f in enumerate(item["index"])}
    return item["frames"][[pos[f] for f in indices]]


class AnomShieldPredictor:
    """`vau infer`'s AnomShield part: which videos and questions, and the passes of ECVA §IV-A.

    Args:
        cfg: The ``InferConfig``.
        model_cfg: The export's run config.
        model: The exported AnomShield model (eval mode, on the predicting device later).
        done: Record ids already written (their questions are not asked again).
    """

    def __init__(self, cfg: Any, model_cfg: Any, model: torch.nn.Module, done: set[str]) -> None:
        from vau.data.text.tokenizer import build_tokenizer

        self.cfg, self.model_cfg, self.model, self.done = cfg, model_cfg, model, done
        hp = cfg.hard_prompt
        if cfg.sampling not in ("hard_prompt", "uniform"):
            raise ConfigError(f"sampling={cfg.sampling!r}: expected hard_prompt or uniform")
        longest = max(cfg.frames, hp.top_k * hp.dense_frames if cfg.sampling == "hard_prompt" else 0)
        if longest > model_cfg.model.max_frames:
            raise ConfigError(f"{longest} frames per answer exceed the model's max_frames={model_cfg.model.max_frames} "
                              "(lower frames or hard_prompt.top_k x hard_prompt.dense_frames)")
        self.tok = build_tokenizer(model_cfg.model.llm)
        self.gen = dict(cfg.generation)
        self.name = str(cfg.model)
        self.ranker: Optional[Callable] = None

    def loader(self, trainer: Any) -> DataLoader:
        """This rank's videos with unanswered questions, in lists (errors as ``{"key", "error"}`` items)."""
        ds = VideoQuestions(self.cfg, self.model_cfg, self.done, trainer.global_rank, trainer.world_size)
        return DataLoader(ds, batch_size=self.cfg.batch_size, collate_fn=list, num_workers=self.cfg.num_workers,
                          persistent_workers=False)

    def start(self) -> None:
        """Builds the segment ranker (on the predicting process, after the devices are set)."""
        if self.cfg.sampling == "hard_prompt":
            from vau.families.anomshield.hard_prompt import RANKERS

            self.ranker = RANKERS.get(self.cfg.hard_prompt.ranker)(self.cfg.hard_prompt, Path(self.cfg.out))

    def _generate(self, jobs: list[tuple[str, torch.Tensor]], max_new_tokens: Optional[int] = None) -> list[str]:
        """Answers (question, clip) jobs in chunks of ``batch_size`` clips with equal frame counts."""
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

    def predict(self, videos: list[dict]) -> list[dict]:
        """Records (one per question) of a batch of decoded videos."""
        hp = self.cfg.hard_prompt
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
        return records


def _question_text(prompt: str) -> str:
    return prompt.replace("<video>", "").replace("<image>", "").strip()




def qa_pairs(annotation: dict) -> list[tuple[str, str]]:
    """(question, reference answer) pairs of an annotation's conversation, in order."""
    conv = annotation.get("conversations") or []
    return [(conv[i]["value"], conv[i + 1]["value"]) for i in range(0, len(conv) - 1, 2)]


def generate_batch(model: torch.nn.Module, template: str, tok: Any, questions: Sequence[str],
                   pixel_values: torch.Tensor, generation: Mapping[str, Any] | None = None) -> list[str]:
    """Answers of ``model`` to ``questions[i]`` about clip ``pixel_values[i]`` (``[B, T, 3, S, S]``).

    Prompts are left-padded so every sequence ends where generation starts; the attention
    mask hides the padding (HF derives position ids from it).

    Args:
        model: An AnomShield model (``tokens_per_frame``, ``generate``).
        template: Conversation template name (``cfg.model.template``).
        tok: The model's tokenizer.
        questions: One question per clip (a ``<video>`` placeholder is added when missing).
        pixel_values: Frames, one clip per question.
        generation: ``generate`` keyword arguments (max_new_tokens, do_sample, ...); greedy by default.
    """
    from vau.data.text.conversation import generation_prompt

    if len(questions) != pixel_values.shape[0]:
        raise ValueError(f"{len(questions)} questions for {pixel_values.shape[0]} clips")
    n_visual = model.tokens_per_frame * pixel_values.shape[1]
    prompts = [generation_prompt(template, q, tok, n_visual) for q in questions]
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), tok.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = torch.tensor(p), 1
    kwargs = {"max_new_tokens": 48, "do_sample": False, **dict(generation or {})}
    if not kwargs["do_sample"]:  # HF warns about sampling-only settings under greedy/beam decoding
        kwargs = {k: v for k, v in kwargs.items() if k not in ("temperature", "top_p")}
    device = next(model.parameters()).device
    out = model.generate(ids.to(device), mask.to(device), pixel_values.to(device, model.temporal_embed.dtype),
                         eos_token_id=tok.eos_id, pad_token_id=tok.pad_id, **kwargs)
    return [tok.decode(_until_eos(row.tolist(), tok.eos_id)).strip() for row in out]


def _until_eos(ids: list[int], eos: int) -> list[int]:
    return ids[:ids.index(eos)] if eos in ids else ids


def answer(model: torch.nn.Module, cfg: Any, tok: Any, pixel_values: torch.Tensor, question: str,
           max_new_tokens: int = 48) -> str:
    """Greedy answer of ``model`` to ``question`` about one clip ``[T, 3, S, S]``."""
    return generate_batch(model, cfg.model.template, tok, [question], pixel_values[None],
                          {"max_new_tokens": max_new_tokens})[0]


def answers_for_shards(source: str | Path, shards: str, limit: int = 3, questions: int = 2) -> Iterator[dict]:
    """Generated answers beside the ground truth: the first ``questions`` QA pairs of the
    first ``limit`` samples of a shard set, each asked on its own (single-turn)."""
    from vau.data.shards.shardlist import expand_shards
    from vau.export import load_export
    from vau.families.anomshield.data import AnomShieldDecoder, visual_tokens
    from vau.data.shards.tario import BadSample, iter_shard
    from vau.data.text.tokenizer import build_tokenizer

    cfg, _, model = load_export(source)
    tok = build_tokenizer(cfg.model.llm)
    decoder = AnomShieldDecoder(cfg, tok, visual_tokens(cfg), train=False)
    samples: Iterable = (s for url in expand_shards(shards) for s in iter_shard(url) if not isinstance(s, BadSample))
    for sample, _ in zip(samples, range(limit)):
        item = decoder(sample)
        pairs = qa_pairs(item["annotation"])
        if not pairs:
            raise ValueError(f"{item['key']}: annotation has no question/answer turns")
        for i, (question, truth) in enumerate(pairs[:questions]):
            if i:  # later turns lost their placeholder; the clip is shown with every question
                question = "<video>\n" + question
            yield {"key": item["key"], "question": question, "truth": truth,
                   "answer": answer(model, cfg, tok, item["pixel_values"], question)}
