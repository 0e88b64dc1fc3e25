"""BLEU, ROUGE-1/2/L of free-text answers computed the way the ECVA paper's own script does (Tabs. III-V).

# Reimplements github.com/Dulpy/ECVA eval_traditional/eval_bleu_rouge.py (get_bleu_score, get_rouge_score, main).

What that script does, and so what this module does:

* **BLEU**: NLTK ``sentence_bleu`` with its default weights (0.25, 0.25, 0.25, 0.25), i.e.
  cumulative BLEU-4, and ``SmoothingFunction().method1`` (an n-gram order with no match gets
  0.1 matches instead of 0, so a short answer does not score exactly 0). Tokens are
  ``str.split()``: whitespace only, case kept, punctuation stays glued to words
  (``"window."`` != ``"window"``). One score per answer, then the plain mean over answers
  (sentence level, not NLTK's ``corpus_bleu``). Scale 0-1 (the paper prints it x100 as %).
* **ROUGE**: Google's ``rouge_score.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)``
  on the raw strings: its own tokeniser (lowercase, every non ``[a-z0-9]`` character is a
  separator) and the Porter stemmer on tokens longer than 3 characters. The F-measure
  (``fmeasure``, F1) is reported, averaged over answers; ROUGE-L is the sentence-level LCS one
  (``rougeL``, not ``rougeLsum``).
* **Argument order**: the script calls ``get_bleu_score(response, answer)`` with the signature
  ``(reference, candidate)``, so the *model's answer is the BLEU reference and the human answer
  is the candidate* (same for ROUGE: ``scorer.score(target=model answer, prediction=human)``).
  BLEU is not symmetric (brevity penalty, precision), so this changes it; ROUGE F1 is
  symmetric. ``reference_code_order=True`` (the default) keeps that order, so the numbers
  compare with the paper's; False scores the model's answer against the human one, as BLEU
  is usually meant.
* **Averaging**: the script divides the sum by a hard-coded 985 (``index = 985 # TODO FIX``),
  which is the number of test answers it had; here the sum is divided by the number of
  answers scored.
* **Several references** (ECVA has one per answer; the script knows only one): in the
  reference-code order each reference is scored as a candidate against the answer and the
  best one counts (per metric); in the usual order NLTK's multi-reference BLEU and
  ``RougeScorer.score_multi`` (best reference per metric) are used.

The script's ``nltk.download('punkt')`` is unused by what it computes (nothing calls an NLTK
tokeniser), so no NLTK data is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from vau.errors import BadInputError

ROUGE_KEYS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}
"""rouge_score's names -> the names of our results."""


def ecva_bleu(candidate: str, references: Sequence[str]) -> float:
    """Smoothed sentence BLEU-4 of ``candidate`` against ``references`` (whitespace tokens, NLTK method1)."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    return float(sentence_bleu([r.split() for r in references], candidate.split(),
                               smoothing_function=SmoothingFunction().method1))


def _scorer():
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(list(ROUGE_KEYS), use_stemmer=True)


def ecva_bleu_rouge(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]],
                    reference_code_order: bool = True) -> dict[str, float]:
    """Mean sentence BLEU and ROUGE-1/2/L F1 of answers, as ECVA's eval_bleu_rouge.py computes them.

    Args:
        predictions: Sample id -> the model's answer.
        references: Sample id -> the human answer(s); must hold every predicted id.
        reference_code_order: Score the human answer as the candidate against the model's
            answer, as the script does (True), or the model's answer against the human ones.

    Returns:
        ``{"BLEU", "ROUGE-1", "ROUGE-2", "ROUGE-L"}``: means over answers, each on 0-1.

    Raises:
        BadInputError: No predictions, or a prediction without references.
    """
    if not predictions:
        raise BadInputError("ecva_bleu_rouge: no predictions")
    missing = [k for k in predictions if not references.get(k)]
    if missing:
        raise BadInputError(f"ecva_bleu_rouge: no references for {len(missing)} prediction(s), e.g. {missing[0]!r}")
    scorer = _scorer()
    totals = dict.fromkeys(["BLEU", *ROUGE_KEYS.values()], 0.0)
    for key, answer in predictions.items():
        refs = list(references[key])
        if reference_code_order:
            bleu = max(ecva_bleu(r, [answer]) for r in refs)
            per_ref = [scorer.score(answer, r) for r in refs]  # score(target, prediction)
            rouge = {k: max(s[k].fmeasure for s in per_ref) for k in ROUGE_KEYS}
        else:
            bleu = ecva_bleu(answer, refs)
            multi = scorer.score_multi(refs, answer)
            rouge = {k: multi[k].fmeasure for k in ROUGE_KEYS}
        totals["BLEU"] += bleu
        for k, name in ROUGE_KEYS.items():
            totals[name] += rouge[k]
    return {k: v / len(predictions) for k, v in totals.items()}
