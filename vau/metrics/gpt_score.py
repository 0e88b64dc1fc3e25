"""The "GPT-Based" column of ECVA's Tabs. III-V: an LLM judge rates each answer 0-5 against the reference.

The prompts are ECVA's own (github.com/Dulpy/ECVA eval_traditional/eval_videochatgpt/
evaluate_benchmark_{1_correctness,2_detailed_orientation,3_context,4_temporal}.py, the
Video-ChatGPT benchmark prompts as ECVA adapted them), word for word, including their example
answer ``{''score': 4.8}`` with its stray quote. Differences from those scripts:

* They send a system and a user message; the judge interface (:mod:`vau.eval.judge`) sends one
  user message, so the prompt is the system text, a blank line, then the user text.
* They read the answer with ``ast.literal_eval(answer)['score']`` and ``int()`` it (4.8 -> 4);
  here the first ``{...}`` literal with a numeric ``score`` is read the same way, and failing
  that a ``score: N`` / ``'score': N`` pair, then ``int()`` as they do. A value outside 0..5 or
  an answer with neither is *unparseable*: counted, never guessed.
* They average over a hard-coded subset (985 answers) and, for three of the four prompts,
  count or crash on unreadable answers; here each aspect's score is the mean over the answers
  it could read.

The paper does not say which of the four prompts its single column uses (its values, up to 6.33,
exceed 0..5, so its aggregate is not one of these means); ``aspects=("correctness",)`` (the first
script, the only one that skips unreadable answers) is our default, and the column is the mean
of the chosen aspects' means.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vau.errors import ConfigError
from vau.metrics.anomeval import Judge

_HEAD = "You are an intelligent chatbot designed for evaluating the {what} of generative outputs for video-based question-answer pairs. "
_USER = ("Please evaluate the following video-based question-answer pair:\n\n"
         "Question: {question}\n"
         "Correct Answer: {answer}\n"
         "Predicted Answer: {prediction}\n\n"
         "Provide your evaluation only as a {name} score where the {name} score is an integer value between 0 and 5, "
         "with 5 indicating the highest level of {highest}. "
         "Please generate the response in the form of a Python dictionary string with keys 'score', "
         "where its value is {value} in INTEGER, not STRING."
         "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
         "For example, your response should look like this: {{''score': 4.8}}.")


@dataclass(frozen=True)
class Aspect:
    """One of ECVA's GPT scoring prompts."""

    system: str
    """The system message."""
    name: str
    """What the score is called in the user message."""
    highest: str
    """What a 5 is the highest level of."""
    value: str
    """How the user message names the value."""

    def prompt(self, question: str, answer: str, prediction: str) -> str:
        """System text, a blank line, the user text with the pair filled in."""
        # str.format parses only the template: braces inside an answer are kept as they are
        return self.system + "\n\n" + _USER.format(name=self.name, highest=self.highest, value=self.value,
                                                   question=question, answer=answer, prediction=prediction)


ASPECTS: dict[str, Aspect] = {
    "correctness": Aspect(
        _HEAD.format(what="factual accuracy")
        + "Your task is to compare the predicted answer with the correct answer and determine if they are factually "
          "consistent. Here's how you can accomplish the task:------##INSTRUCTIONS: "
          "- Focus on the factual consistency between the predicted answer and the correct answer. The predicted "
          "answer should not contain any misinterpretations or misinformation.\n"
          "- The predicted answer must be factually accurate and align with the video content.\n"
          "- Consider synonyms or paraphrases as valid matches.\n"
          "- Evaluate the factual accuracy of the prediction compared to the answer.",
        "factual accuracy", "factual consistency", "the factual accuracy score"),
    "detail": Aspect(
        _HEAD.format(what="detail orientation")
        + "Your task is to compare the predicted answer with the correct answer and determine its level of detail, "
          "considering both completeness and specificity. Here's how you can accomplish the task:------##INSTRUCTIONS: "
          "- Check if the predicted answer covers all major points from the video. The response should not leave out "
          "any key aspects.\n"
          "- Evaluate whether the predicted answer includes specific details rather than just generic points. It "
          "should provide comprehensive information that is tied to specific elements of the video.\n"
          "- Consider synonyms or paraphrases as valid matches.\n"
          "- Provide a single evaluation score that reflects the level of detail orientation of the prediction, "
          "considering both completeness and specificity.",
        "detail orientation", "detail orientation", "the detail orientation score"),
    "context": Aspect(
        _HEAD.format(what="contextual understanding")
        + "Your task is to compare the predicted answer with the correct answer and determine if the generated "
          "response aligns with the overall context of the video content. Here's how you can accomplish the "
          "task:------##INSTRUCTIONS: "
          "- Evaluate whether the predicted answer aligns with the overall context of the video content. It should "
          "not provide information that is out of context or misaligned.\n"
          "- The predicted answer must capture the main themes and sentiments of the video.\n"
          "- Consider synonyms or paraphrases as valid matches.\n"
          "- Provide your evaluation of the contextual understanding of the prediction compared to the answer.",
        "contextual understanding", "contextual understanding", "contextual understanding score"),
    "temporal": Aspect(
        _HEAD.format(what="temporal understanding")
        + "Your task is to compare the predicted answer with the correct answer and determine if they correctly "
          "reflect the temporal sequence of events in the video content. Here's how you can accomplish the "
          "task:------##INSTRUCTIONS: "
          "- Focus on the temporal consistency between the predicted answer and the correct answer. The predicted "
          "answer should correctly reflect the sequence of events or details as they are presented in the video "
          "content.\n"
          "- Consider synonyms or paraphrases as valid matches, but only if the temporal order is maintained.\n"
          "- Evaluate the temporal accuracy of the prediction compared to the answer.",
        "temporal accuracy", "temporal consistency", "the temporal accuracy score"),
}
"""ECVA's four GPT scoring prompts by aspect name (``metrics.gpt_aspects``)."""

_DICT = re.compile(r"\{[^{}]*\}")
_PAIR = re.compile(r"""['"]?\bscore\b['"]?\s*[:=]\s*(-?\d+(?:\.\d+)?)""", re.IGNORECASE)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_gpt_score(text: str | None) -> int | None:
    """The 0..5 score of a judge answer like ``{'score': 4}``, ``int()``-ed as ECVA does; None if unreadable."""
    text = text or ""
    value = None
    for literal in _DICT.findall(text):
        try:
            obj = ast.literal_eval(literal)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(obj, dict) and _number(obj.get("score")) is not None:
            value = _number(obj["score"])
            break
    if value is None:
        m = _PAIR.search(text)
        value = float(m.group(1)) if m else None
    if value is None or not 0 <= value <= 5:
        return None
    return int(value)


def check_aspects(aspects: Sequence[str], key: str = "metrics.gpt_aspects") -> None:
    """A one-line error naming ``key`` for an empty list or an unknown aspect."""
    if not aspects:
        raise ConfigError(f"{key} is empty: name at least one of {', '.join(ASPECTS)}")
    unknown = [a for a in aspects if a not in ASPECTS]
    if unknown:
        raise ConfigError(f"{key}: unknown aspect {unknown[0]!r}; expected some of {', '.join(ASPECTS)}")


def gpt_score(items: Sequence[dict[str, str]], judge: Judge,
              aspects: Sequence[str] = ("correctness",)) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Judge ratings of answers and their means.

    Args:
        items: ``{"id", "question", "reference", "prediction"}`` per answer.
        judge: Anything with ``complete(prompt) -> str`` (a :class:`vau.eval.judge.CachedJudge`).
        aspects: Keys of :data:`ASPECTS`.

    Returns:
        Per answer and aspect ``{"id", "aspect", "answer", "score"}`` (score None when unreadable),
        and ``{"GPT": mean of the aspects' means (None if one has no readable answer),
        "GPT-<aspect>": mean score, "GPT-n_scored": readable answers, "GPT-unparseable": the rest}``.
    """
    check_aspects(aspects)
    per_item: list[dict[str, Any]] = []
    for item in items:
        for name in aspects:
            answer = judge.complete(ASPECTS[name].prompt(item["question"], item["reference"], item["prediction"]))
            per_item.append({"id": item["id"], "aspect": name, "answer": answer, "score": parse_gpt_score(answer)})
    summary: dict[str, Any] = {}
    for name in aspects:
        scores = [i["score"] for i in per_item if i["aspect"] == name and i["score"] is not None]
        summary[f"GPT-{name}"] = sum(scores) / len(scores) if scores else None
    means = [summary[f"GPT-{a}"] for a in aspects]
    summary["GPT"] = None if None in means else sum(means) / len(means)
    summary["GPT-n_scored"] = sum(i["score"] is not None for i in per_item)
    summary["GPT-unparseable"] = sum(i["score"] is None for i in per_item)
    return per_item, summary
