"""Conversation templates: placeholder expansion, loss masks, truncation, annotation turns."""

from __future__ import annotations

import pytest

from vau.constants import IGNORE_INDEX, VISUAL_TOKEN
from vau.data.text.conversation import (
    TEMPLATES,
    generation_prompt,
    mistral,
    plain,
    truncate,
    turns_from_annotation,
)
from vau.data.text.tokenizer import ByteTokenizer

TOK = ByteTokenizer(128)


def _text(ids):
    return TOK.decode([i for i in ids if i >= 0])


def test_plain_is_visual_then_answer_with_loss_on_answer_only():
    ex = plain([("<image>\nDescribe.", "a red circle")], TOK, n_visual=4)
    assert ex.input_ids[:5] == [TOK.bos_id] + [VISUAL_TOKEN] * 4
    assert _text(ex.input_ids) == "a red circle"  # the prompt text is dropped
    assert ex.input_ids[-1] == TOK.eos_id
    learned = [t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE_INDEX]
    assert learned == TOK.encode("a red circle") + [TOK.eos_id]
    assert all(lab == IGNORE_INDEX for lab in ex.labels[:5])


def test_mistral_format_two_turns():
    turns = [("<video>\nWhat happens?", "Two shapes collide."), ("When?", "From 2.0 s to 3.5 s.")]
    ex = mistral(turns, TOK, n_visual=3)
    text = "".join("<V>" if t == VISUAL_TOKEN else TOK.decode([t]) for t in ex.input_ids[1:])
    eos = TOK.decode([TOK.eos_id])  # empty: eos is a control id
    assert ex.input_ids[0] == TOK.bos_id
    assert text == ("[INST] <V><V><V>\nWhat happens? [/INST] Two shapes collide." + eos
                    + "[INST] When? [/INST] From 2.0 s to 3.5 s." + eos)
    assert ex.input_ids.count(TOK.eos_id) == 2
    # the loss covers exactly the two answers and their eos tokens
    learned = [t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE_INDEX]
    want = TOK.encode(" Two shapes collide.") + [TOK.eos_id] + TOK.encode(" From 2.0 s to 3.5 s.") + [TOK.eos_id]
    assert learned == want
    assert len(ex.input_ids) == len(ex.labels)


def test_placeholder_is_added_when_missing_and_counted_once():
    ex = mistral([("What happens?", "Nothing.")], TOK, n_visual=5)
    assert ex.input_ids.count(VISUAL_TOKEN) == 5
    first_visual = ex.input_ids.index(VISUAL_TOKEN)
    assert _text(ex.input_ids[:first_visual]) == "[INST] "


def test_generation_prompt_matches_training_prefix():
    q = "<video>\nWhat happens?"
    train = mistral([(q, "Answer.")], TOK, n_visual=2).input_ids
    prompt = generation_prompt("mistral", q, TOK, n_visual=2)
    assert train[: len(prompt)] == prompt
    assert generation_prompt("plain", q, TOK, 2) == [TOK.bos_id, VISUAL_TOKEN, VISUAL_TOKEN]


def test_truncate_keeps_visual_tokens_or_refuses():
    ex = plain([("", "x" * 50)], TOK, n_visual=8)
    cut = truncate(ex, 20)
    assert len(cut.input_ids) == 20 and cut.input_ids.count(VISUAL_TOKEN) == 8
    with pytest.raises(ValueError, match="max_length=5"):
        truncate(ex, 5)


def test_turns_from_annotation():
    ann = {"caption": "short", "captions": ["short", "a long description"],
           "conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
                             {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]}
    assert turns_from_annotation(ann, "conversations", "p") == [("q1", "a1"), ("q2", "a2")]
    assert turns_from_annotation(ann, "caption", "p") == [("p", "short")]
    assert turns_from_annotation(ann, "long_caption", "p") == [("p", "a long description")]
    with pytest.raises(ValueError, match="no conversations"):
        turns_from_annotation({"caption": "x"}, "conversations", "p")
    with pytest.raises(ValueError, match="data.target"):
        turns_from_annotation(ann, "summary", "p")
    bad = {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}
    with pytest.raises(ValueError, match="human turn then a gpt turn"):
        turns_from_annotation(bad, "conversations", "p")


def test_registry_names():
    assert set(TEMPLATES) == {"plain", "mistral"}
