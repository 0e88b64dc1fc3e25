"""Per-answer loss averaging (``model.loss=answer``) and single-pair examples (``data.turns=one``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vau.config import compose
from vau.constants import IGNORE_INDEX
from vau.data.media.decode import sample_rng
from vau.errors import ConfigError
from vau.families.anomshield.data import one_turn
from vau.models.llm import answer_mean_loss

X = IGNORE_INDEX


def _reference(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each answer's mean next-token loss, found by walking the labels, then their mean."""
    losses = []
    for b in range(labels.shape[0]):
        run: list[int] = []
        for t in range(1, labels.shape[1] + 1):
            if t < labels.shape[1] and labels[b, t] != X:
                run.append(t)
                continue
            if run:
                idx = torch.tensor(run)
                losses.append(F.cross_entropy(logits[b, idx - 1], labels[b, idx]))
                run = []
    return torch.stack(losses).mean()


def test_answer_mean_matches_a_walk_over_the_answers():
    torch.manual_seed(0)
    labels = torch.tensor([[X, X, 5, 6, 7, 8, 9, X, X, 3, X],
                           [X, 4, X, X, X, 1, 2, X, X, X, X]])
    logits = torch.randn(2, 11, 12, requires_grad=True)
    got = answer_mean_loss(logits, labels)
    assert float(got) == pytest.approx(float(_reference(logits, labels)), abs=1e-6)
    got.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # four answers of 5, 1, 1 and 2 tokens: not the token mean HF takes
    token_mean = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=X)
    assert abs(float(got) - float(token_mean)) > 1e-3


def test_answer_mean_is_the_token_mean_for_equal_answers_and_zero_without_any():
    torch.manual_seed(1)
    labels = torch.tensor([[X, 2, 3, X], [X, 5, 6, X]])
    logits = torch.randn(2, 4, 8)
    token_mean = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=X)
    assert answer_mean_loss(logits, labels) == pytest.approx(float(token_mean), abs=1e-6)
    assert float(answer_mean_loss(logits, torch.full((2, 4), X))) == 0.0


def test_one_turn_is_one_pair_asked_alone_and_covers_every_pair():
    turns = [("<video>\nDescribe it.", "A long answer."), ("Anomaly?", "Yes."), ("Which?", "Fire.")]
    picks = {one_turn(turns, sample_rng(0, epoch, "clip#turn")) for epoch in range(40)}
    assert picks == {("Describe it.", "A long answer."), ("Anomaly?", "Yes."), ("Which?", "Fire.")}
    assert one_turn(turns, sample_rng(0, 3, "clip#turn")) == one_turn(turns, sample_rng(0, 3, "clip#turn"))


def test_stage3_twin_trains_on_single_pairs_with_answer_loss():
    cfg = compose(["experiment=tiny/anomshield_stage3"])
    assert cfg.data.turns == "one" and cfg.model.loss == "answer"
    full = compose(["experiment=anomshield/stage3"])
    assert full.data.turns == "all" and full.model.loss == "token"  # ECVA's recipe stays as the paper's


@pytest.mark.parametrize("override, message", [("data.turns=two", r"data.turns='two': expected one of all, one"),
                                               ("model.loss=mean", r"model.loss='mean': expected one of token, answer")])
def test_bad_values_fail_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        compose(["experiment=tiny/anomshield_stage3", override])
