"""BLEU / ROUGE as ECVA's eval_bleu_rouge.py computes them: closed-form cases and the libraries called its way."""

from __future__ import annotations

import math

import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_score.rouge_scorer import RougeScorer

from vau.errors import BadInputError
from vau.metrics.ecva_text import ecva_bleu, ecva_bleu_rouge

PAIRS = {  # id -> (model answer, human answer), ECVA-like free text
    "v1": ("A man in a black hoodie breaks the shop window with a rock and runs away.",
           "A man smashes the shop window with a rock, then he runs away from the scene."),
    "v2": ("Two cars collide at the crossing.", "A red car ignores the traffic light and crashes into a white car."),
    "v3": ("The people are fighting.", "Two men start fighting in the street after an argument."),
    "v4": ("nothing unusual happens", "A fire breaks out in the kitchen."),
}


def _split(pairs):
    return {k: a for k, (a, _) in pairs.items()}, {k: [h] for k, (_, h) in pairs.items()}


def test_bleu_closed_form_in_both_orders():
    # Reference-code order: the human answer "the cat sat" is the candidate, the model's answer the
    # reference. p1..p3 = 1, no 4-gram at all -> method1 gives 0.1/1; brevity penalty exp(1 - 6/3).
    got = ecva_bleu_rouge({"x": "the cat sat on the mat"}, {"x": ["the cat sat"]})
    assert got["BLEU"] == pytest.approx(math.exp(1 - 6 / 3) * 0.1 ** 0.25)
    # The usual order: clipped matches 3/6, 2/5, 1/4, and 0 of 3 four-grams -> 0.1/3; no brevity penalty.
    usual = ecva_bleu_rouge({"x": "the cat sat on the mat"}, {"x": ["the cat sat"]}, reference_code_order=False)
    assert usual["BLEU"] == pytest.approx(math.exp((math.log(3 / 6) + math.log(2 / 5) + math.log(1 / 4)
                                                    + math.log(0.1 / 3)) / 4))
    # ROUGE F1 is symmetric: both orders agree (unigrams 3 of 6 / 3 of 3 -> F = 2/3).
    assert got["ROUGE-1"] == usual["ROUGE-1"] == pytest.approx(2 / 3)


def test_tokens_are_whitespace_for_bleu_and_stemmed_lowercase_for_rouge():
    got = ecva_bleu_rouge({"x": "The cars crashed."}, {"x": ["a car crashes"]})
    # str.split keeps case and punctuation: no unigram in common -> BLEU 0 (smoothing needs a unigram match)
    assert got["BLEU"] == 0.0
    # rouge-score: lowercase, punctuation dropped, Porter stem of tokens > 3 chars:
    # [the, car, crash] vs [a, car, crash] -> R1 = 2/3, R2 = {car crash} 1 of 2, LCS 2 of 3.
    assert got["ROUGE-1"] == pytest.approx(2 / 3)
    assert got["ROUGE-2"] == pytest.approx(1 / 2)
    assert got["ROUGE-L"] == pytest.approx(2 / 3)
    unstemmed = RougeScorer(["rouge2"]).score("a car crashes", "The cars crashed.")["rouge2"].fmeasure
    assert unstemmed == 0.0  # the stemmer is what matches them


def test_equals_the_libraries_called_as_the_reference_script_does():
    preds, refs = _split(PAIRS)
    got = ecva_bleu_rouge(preds, refs)
    # eval_bleu_rouge.py: get_bleu_score(response, answer) / get_rouge_score(response, answer),
    # signatures (reference, candidate): the model's response is the reference.
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    smooth = SmoothingFunction().method1
    bleu = [sentence_bleu([resp.split()], ans.split(), smoothing_function=smooth) for resp, ans in PAIRS.values()]
    rouge = [scorer.score(resp, ans) for resp, ans in PAIRS.values()]
    want = {"BLEU": sum(bleu) / 4, **{name: sum(r[k].fmeasure for r in rouge) / 4
                                      for k, name in (("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L"))}}
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < got["BLEU"] < got["ROUGE-L"] < 1
    # and the usual direction is the other sentence_bleu call
    usual = ecva_bleu_rouge(preds, refs, reference_code_order=False)
    assert usual["BLEU"] == pytest.approx(sum(sentence_bleu([ans.split()], resp.split(), smoothing_function=smooth)
                                              for resp, ans in PAIRS.values()) / 4)
    assert usual["BLEU"] != pytest.approx(got["BLEU"])
    assert usual["ROUGE-L"] == pytest.approx(got["ROUGE-L"])


def test_several_references_take_the_best():
    answer = "a man breaks a window"
    refs = ["a dog barks loudly", "a man breaks a window"]
    got = ecva_bleu_rouge({"x": answer}, {"x": refs})
    assert got == pytest.approx({"BLEU": 1.0, "ROUGE-1": 1.0, "ROUGE-2": 1.0, "ROUGE-L": 1.0})
    usual = ecva_bleu_rouge({"x": "a man breaks a window today"}, {"x": refs}, reference_code_order=False)
    want = sentence_bleu([r.split() for r in refs], "a man breaks a window today".split(),
                         smoothing_function=SmoothingFunction().method1)
    assert usual["BLEU"] == pytest.approx(want)
    assert ecva_bleu("a man", ["a man"]) == pytest.approx(0.1 ** 0.5)  # p1 = p2 = 1, p3, p4 -> 0.1 each


def test_bad_input_is_one_line():
    with pytest.raises(BadInputError, match="no predictions"):
        ecva_bleu_rouge({}, {})
    with pytest.raises(BadInputError, match=r"no references for 1 prediction\(s\), e.g. 'b'"):
        ecva_bleu_rouge({"a": "x", "b": "y"}, {"a": ["x"], "b": []})
