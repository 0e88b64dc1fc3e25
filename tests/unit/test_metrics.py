"""Metrics: caption scores equal pycocoevalcap's own, IoU closed forms, timestamp parsing, classes."""

from __future__ import annotations

import pytest

from vau.metrics import caption_scores, classification_accuracy, parse_segments, temporal_iou

PRED = {"a": "a man breaks a window at night", "b": "two cars collide on the road", "c": "nothing happens"}
REFS = {"a": ["a man smashes a shop window", "someone breaks the window"],
        "b": ["cars crash on a road"], "c": ["the scene is calm and nothing happens"]}


def test_caption_scores_equal_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    res = tok.tokenize({k: [{"caption": v}] for k, v in PRED.items()})
    gts = tok.tokenize({k: [{"caption": r} for r in v] for k, v in REFS.items()})
    bleu = Bleu(4).compute_score(gts, res)[0]
    want = {"BLEU-1": bleu[0], "BLEU-2": bleu[1], "BLEU-3": bleu[2], "BLEU-4": bleu[3],
            "METEOR": Meteor().compute_score(gts, res)[0], "ROUGE-L": Rouge().compute_score(gts, res)[0],
            "CIDEr": Cider().compute_score(gts, res)[0]}
    got = caption_scores(PRED, REFS)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < got["BLEU-1"] < 1 and got["CIDEr"] > 0
    perfect = caption_scores({"a": "a man breaks a window"}, {"a": ["a man breaks a window"]})
    assert perfect["BLEU-1"] == pytest.approx(1.0) and perfect["ROUGE-L"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no references"):
        caption_scores({"x": "y"}, {})


@pytest.mark.parametrize("pred,gt,want", [
    ([[0, 10]], [[5, 15]], 5 / 15),
    ([[0, 2], [4, 6]], [[1, 5]], 2 / 6),                 # two predicted spans, one reference
    ([[0, 2], [4, 6]], [[0, 2], [4, 6]], 1.0),
    ([[0, 4], [2, 6]], [[0, 6]], 1.0),                   # overlapping spans count once
    ([[0, 1]], [[2, 3]], 0.0),
    ([[0, 3], [5, 9]], [[2, 6], [8, 10]], (1 + 1 + 1) / 10),
    ([], [[0, 1]], 0.0),
    ([], [], 0.0),
])
def test_temporal_iou_closed_forms(pred, gt, want):
    assert temporal_iou(pred, gt) == pytest.approx(want)
    assert temporal_iou(gt, pred) == pytest.approx(want)  # symmetric


@pytest.mark.parametrize("text,want", [
    ("[0052,0114][0118,0144]", [[52, 74], [78, 104]]),
    ("The anomaly is at [0958,1012].", [[598, 612]]),
    ("From 2.0 s to 3.5 s.", [[2.0, 3.5]]),
    ("between 00:52 and 01:14", [[52, 74]]),
    ("It happens 1:02:03 - 1:02:10", [[3723, 3730]]),
    ("12-15 seconds, then 20 to 22.5", [[12, 15], [20, 22.5]]),
    ("No anomaly.", []),
])
def test_parse_segments(text, want):
    assert parse_segments(text) == want


def test_classification_accuracy_matches_any_level():
    preds = {"a": "This is a traffic accident.", "b": "Someone is fighting", "c": "A robbery", "d": "Normal."}
    classes = {"a": ["Traffic accident/Collision"], "b": ["Fighting"], "c": ["Shooting"], "d": ["Explosion"]}
    assert classification_accuracy(preds, classes) == 0.5
    assert classification_accuracy({"x": "a collision happens"}, {"x": ["Traffic accident/Collision"]}) == 1.0
    assert classification_accuracy({"x": "fighter jets"}, {"x": ["fight"]}) == 0.0  # whole words only
