"""Answers from an exported video LLM: rebuild the model from its export, prompt, generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from vau.errors import NotFoundError


def load_export(source: str | Path) -> tuple[Any, torch.nn.Module]:
    """Rebuilds a run's model from its export: ``(resolved config, model in eval mode)``.

    The model is constructed from the export's ``config.yaml`` with the run's seed (same
    construction order as ``vau train``, so a random-init base matches) and the exported
    weights are loaded on top.

    Raises:
        FileNotFoundError: No export at ``source`` (a run dir with ``export/`` or the folder itself).
    """
    import lightning as L

    from vau.config import compose
    from vau.families import FAMILIES
    from vau.lit.checkpoint import load_weights

    src = Path(source)
    export = src / "export" if (src / "export" / "config.yaml").is_file() else src
    if not (export / "config.yaml").is_file() or not (export / "model.safetensors").is_file():
        raise NotFoundError(f"{source}: no export here (expected config.yaml and model.safetensors, "
                                "or a run dir with export/)")
    cfg = compose([], config_file=export / "config.yaml")
    L.seed_everything(cfg.run.seed, verbose=False)
    model = FAMILIES.get(cfg.model.family).build_module(cfg).model
    load_weights(model, export)
    return cfg, model.eval()


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
    from vau.data.conversation import generation_prompt

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
    from vau.data.anomshield import AnomShieldDecoder, visual_tokens
    from vau.data.shardlist import expand_shards
    from vau.data.tario import BadSample, iter_shard
    from vau.data.tokenizer import build_tokenizer

    cfg, model = load_export(source)
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
