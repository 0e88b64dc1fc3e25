"""AnomEval (ECVA §V, Eqs. 11-14): an LLM judge scores free-text answers against the reference.

Our formalisation of the paper's three components, each in [0, 1]:

* **s1, basic reasoning (Eq. 11)**: ``s1 = (M / N) * (L / 5)``. One judge call reads the
  reference, its key information (the annotation's key sentences; when there are none the judge
  extracts it from the reference) and the prediction, and answers
  ``Key Information Count: N, Included Key Information Count: M`` (M clipped to [0, N]; N = 0 is
  unparseable). A second call rates the logic of the prediction against the reference as
  ``Score: L``, an integer 0..5.
* **s2, consistency (Eq. 12)**: the judge writes ``questions`` yes/no questions whose answer is
  yes according to the reference (numbered or bulleted lines with a '?'; the first ``questions``
  are kept, fewer are accepted, none is unparseable). For each one the judge answers from the
  prediction only (``Answer: yes`` / ``Answer: no``, or a bare leading yes/no);
  ``s2 = (#yes) / Q`` over the Q questions kept.
* **s3, hallucination (Eq. 13)**: the judge compares the model's answer with the answer it gave
  without seeing the anomaly segments (``Consistent: yes/no``). ``s3 = 0`` when they agree (the
  model says the same without the evidence: it hallucinates), ``1`` otherwise.
* **S (Eq. 14)**: ``S = w1*s1 + w2*s2 + w3*s3``. With ``w3 = 0`` s3 is neither computed (no judge
  call) nor needed. S is None when a component with a non-zero weight is None.

An answer the parsers cannot read is recorded (step name in ``unparseable``, component None),
never guessed. The judge's prompts come from ``conf/eval/anomeval.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vau.progress import track
from vau.errors import ConfigError

PROMPT_FIELDS = {
    "key_info": ("question", "reference", "key_information", "prediction"),
    "logic": ("question", "reference", "prediction"),
    "questions": ("n", "reference"),
    "answer": ("prediction", "yes_no_question"),
    "consistency": ("question", "answer_a", "answer_b"),
}
"""Judge prompt names and the ``str.format`` fields each template may use."""

NO_KEY_INFORMATION = "(none given: extract the key information from the reference answer yourself)"
"""What ``{key_information}`` holds when the annotation has no key sentences."""

COMPONENTS = ("s1", "s2", "s3", "S")


class Judge(Protocol):
    """One user message in, the answer text out (backends: :mod:`vau.eval.judge`)."""

    identity: str
    """Backend, model and decoding settings: part of the cache key (never holds an API key)."""

    def complete(self, prompt: str) -> str:
        """The judge's answer to ``prompt`` (sent as a single user message)."""
        ...


@dataclass
class AnomEvalItem:
    """One free-text answer to score.

    Attributes:
        id: Sample id (unique per task).
        task: Task name (description, cause, result).
        question: The question the model answered.
        prediction: The model's answer.
        reference: The annotated answer.
        key_sentences: The annotation's key sentences of the reference (may be empty).
        prediction_without_anomaly: The model's answer on frames outside the anomaly segments (s3).
    """

    id: str
    task: str
    question: str
    prediction: str
    reference: str
    key_sentences: list[str] = field(default_factory=list)
    prediction_without_anomaly: str | None = None


_KEY_INFO = re.compile(r"(included\s+)?key[\s_-]*information[\s_-]*count\W*?(\d+)", re.IGNORECASE)
_SCORE = re.compile(r"score\W*?(\d+(?:\.\d+)?)", re.IGNORECASE)
_LIST_LINE = re.compile(r"^\s*(?:(?:q(?:uestion)?\s*)?\d+\s*[.):]|[-*\u2022])\s*(.+)$", re.IGNORECASE)


def parse_key_info(text: str) -> tuple[int, int] | None:
    """``(N, M)`` from ``Key Information Count: N, Included Key Information Count: M``.

    Case-insensitive, tolerant of markdown around the labels; the first occurrence of each label
    counts. M is clipped to [0, N].

    Returns:
        ``(N, M)``, or None when either count is missing or N is 0.
    """
    n = m = None
    for match in _KEY_INFO.finditer(text):
        value = int(match.group(2))
        if match.group(1) and m is None:
            m = value
        elif not match.group(1) and n is None:
            n = value
    if n is None or m is None or n == 0:
        return None
    return n, min(m, n)


def parse_logic_score(text: str) -> int | None:
    """The integer L in ``Score: L`` (first occurrence), or None unless it is a whole number 0..5."""
    match = _SCORE.search(text)
    if match is None or "." in match.group(1):
        return None
    score = int(match.group(1))
    return score if 0 <= score <= 5 else None


def parse_questions(text: str, n: int | None = None) -> list[str]:
    """The questions of numbered (``1.``, ``2)``, ``Q3:``) or bulleted (``-``, ``*``) lines with a '?'.

    Args:
        text: The judge's answer.
        n: Keep the first ``n`` (None = all).

    Returns:
        The question texts without their markers; empty when none was found.
    """
    found = []
    for line in text.splitlines():
        match = _LIST_LINE.match(line)
        if match and "?" in match.group(1):
            found.append(match.group(1).strip())
    return found if n is None else found[:n]


def parse_yes_no(text: str, label: str = "Answer") -> bool | None:
    """True/False from ``<label>: yes|no`` (first occurrence), else from a bare leading yes/no.

    Args:
        text: The judge's answer.
        label: The label before the verdict (``Answer``, ``Consistent``).

    Returns:
        True for yes, False for no, None when neither form is present.
    """
    match = re.search(rf"{re.escape(label)}\W*?\b(yes|no)\b", text, re.IGNORECASE)
    if match is None:
        match = re.match(r"\W*(yes|no)\b", text, re.IGNORECASE)
    return None if match is None else match.group(1).lower() == "yes"


def _needed_prompts(cfg: Any) -> list[str]:
    names = ["key_info", "logic", "questions", "answer"]
    return names + ["consistency"] if cfg.w3 else names


def _template(cfg: Any, name: str) -> str:
    template = (cfg.prompts or {}).get(name)
    if not template:
        raise ConfigError(f"anomeval.prompts.{name} is not set (the judge prompt templates live in "
                         "conf/eval/anomeval.yaml)")
    return template


def check_prompts(cfg: Any) -> None:
    """Fails before any judge call when a prompt template ``cfg`` needs is missing.

    Raises:
        ValueError: One line naming the missing template and conf/eval/anomeval.yaml.
    """
    for name in _needed_prompts(cfg):
        _template(cfg, name)


def _prompt(cfg: Any, name: str, **fields: Any) -> str:
    template = _template(cfg, name)
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        allowed = ", ".join("{" + f + "}" for f in PROMPT_FIELDS[name])
        raise ConfigError(f"anomeval.prompts.{name}: bad template ({type(e).__name__}: {e}); "
                         f"fields: {allowed}; write literal braces as {{{{ }}}}") from None


def score_item(item: AnomEvalItem, judge: Judge, cfg: Any) -> dict[str, Any]:
    """AnomEval scores of one answer.

    Args:
        item: The answer, its reference and (for s3) the answer without the anomaly segments.
        judge: The LLM judge (usually a ``CachedJudge``).
        cfg: An ``AnomEvalConfig`` (weights, question count, prompts).

    Returns:
        ``{"id", "task", "s1", "s2", "s3", "S", "coverage" (M/N), "logic" (L), "questions",
        "answers" (bool or None per question), "consistent", "unparseable" (step names),
        "reasons" (component -> missing | unparseable | skipped), "raw" (step -> judge text)}``.
    """
    raw: dict[str, str] = {}
    unparseable: list[str] = []
    reasons: dict[str, str] = {}

    def ask(step: str, prompt: str) -> str:
        raw[step] = judge.complete(prompt)
        return raw[step]

    def parsed(step: str, value: Any) -> Any:
        if value is None:
            unparseable.append(step)
        return value

    # Eq. 11: s1 = (M / N) * (L / 5).
    key_information = "\n".join(f"- {s}" for s in item.key_sentences) or NO_KEY_INFORMATION
    counts = parsed("key_info", parse_key_info(ask("key_info", _prompt(
        cfg, "key_info", question=item.question, reference=item.reference,
        key_information=key_information, prediction=item.prediction))))
    logic = parsed("logic", parse_logic_score(ask("logic", _prompt(
        cfg, "logic", question=item.question, reference=item.reference, prediction=item.prediction))))
    coverage = counts[1] / counts[0] if counts else None
    s1 = coverage * logic / 5 if coverage is not None and logic is not None else None

    # Eq. 12: s2 = (#yes) / Q over yes/no questions whose reference answer is yes.
    questions = parse_questions(ask("questions", _prompt(cfg, "questions", n=cfg.questions,
                                                         reference=item.reference)), cfg.questions)
    if not questions:
        unparseable.append("questions")
    answers = [parsed(f"answer_{i}", parse_yes_no(ask(f"answer_{i}", _prompt(
        cfg, "answer", prediction=item.prediction, yes_no_question=q))))
        for i, q in enumerate(questions, 1)]
    s2 = sum(answers) / len(answers) if answers and None not in answers else None

    # Eq. 13: s3 = 0 when the answer without the anomaly agrees with the answer (hallucination), else 1.
    consistent = s3 = None
    if not cfg.w3:
        reasons["s3"] = "skipped"
    elif item.prediction_without_anomaly is None:
        reasons["s3"] = "missing"
    else:
        consistent = parsed("consistency", parse_yes_no(ask("consistency", _prompt(
            cfg, "consistency", question=item.question, answer_a=item.prediction,
            answer_b=item.prediction_without_anomaly)), label="Consistent"))
        s3 = None if consistent is None else float(not consistent)

    for name, value in (("s1", s1), ("s2", s2), ("s3", s3)):
        if value is None and name not in reasons:
            reasons[name] = "unparseable"
    # Eq. 14: S = w1*s1 + w2*s2 + w3*s3, defined when every component with a weight is.
    terms = [(w, s) for w, s in ((cfg.w1, s1), (cfg.w2, s2), (cfg.w3, s3)) if w]
    total = float(sum(w * s for w, s in terms)) if all(s is not None for _, s in terms) else None
    return {"id": item.id, "task": item.task, "s1": s1, "s2": s2, "s3": s3, "S": total,
            "coverage": coverage, "logic": logic, "questions": questions, "answers": answers,
            "consistent": consistent, "unparseable": unparseable, "reasons": reasons, "raw": raw}


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means of s1, s2, s3, S over the rows where each is defined (None if none), with counts.

    Returns:
        ``{"s1", "s2", "s3", "S", "n", "n_scored" (rows with S), "unparseable" (rows with any
        unparseable step)}``.
    """
    out: dict[str, Any] = {c: _mean([r[c] for r in rows]) for c in COMPONENTS}
    out.update(n=len(rows), n_scored=sum(r["S"] is not None for r in rows),
               unparseable=sum(bool(r["unparseable"]) for r in rows))
    return out


def anomeval(items: Sequence[AnomEvalItem], judge: Judge, cfg: Any,
             progress: bool | None = None) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Scores every item of a task in ``cfg.tasks`` and summarises per task.

    Args:
        items: Answers to score; items of other tasks are left out.
        judge: The LLM judge (usually a ``CachedJudge``).
        cfg: An ``AnomEvalConfig``.
        progress: Show a progress bar; None = when stderr is a terminal.

    Returns:
        ``(rows, summary)``: one :func:`score_item` dict per scored item, and task -> :func:`summarise`
        of its rows, plus ``"all"`` over every row.

    Raises:
        ValueError: A needed prompt template is missing or malformed.
    """
    check_prompts(cfg)
    tasks = set(cfg.tasks)
    todo = [it for it in items if it.task in tasks]
    rows = [score_item(it, judge, cfg) for it in track(todo, len(todo), "AnomEval", progress)]
    summary = {task: summarise([r for r in rows if r["task"] == task])
               for task in dict.fromkeys(r["task"] for r in rows)}
    summary["all"] = summarise(rows)
    return rows, summary
