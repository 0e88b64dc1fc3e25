"""AnomEval (ECVA §V, Eqs. 11-14): an LLM judge scores free-text answers against the reference.

Our formalisation of the paper's three components; like the paper, every score is in % (x100).
The per-answer judge calls are in :func:`score_item`; the corpus scores of Eqs. 11-14 are the
pure function :func:`aggregate` of the per-answer counts:

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
  ``s2 = sum(#yes) / sum(T)`` pooled over all answers and their T questions (Eq. 12 sums over
  samples and questions; an item with an answer the parser cannot read is left out of both).
* **s3, hallucination (Eq. 13)**: the judge compares the model's answer with the answer it gave
  without seeing the anomaly segments (``Consistent: yes/no``): ``s3 = -mean(G(x-, x))``, G = 1
  when they agree (the model says the same without the evidence: it hallucinates), so s3 <= 0.
* **S (Eq. 14)**: ``S = w1*s1 + w2*s2 + w3*s3``. With ``w3 = 0`` s3 is neither computed (no judge
  call) nor needed. S is None when a component with a non-zero weight has no item. The paper
  gives no weights: the defaults (0.4/0.4/0.2, ``conf/eval/anomeval.yaml``) are our choice.

An answer the parsers cannot read is recorded (step name in ``unparseable``, component None),
never guessed. The judge's prompts come from ``conf/eval/anomeval.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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
        ``{"id", "task", "s1", "s2", "s3", "S"`` (this answer's Eqs. 11-14, in %), the counts
        :func:`aggregate` takes (``"key_total", "key_included", "logic", "yes", "questions",
        "consistent"``), ``"coverage" (M/N), "yes_no_questions", "answers" (bool or None per
        question), "unparseable" (step names),
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

    # Eq. 12: s2 = (#yes) / Q over yes/no questions whose reference answer is yes.
    questions = parse_questions(ask("questions", _prompt(cfg, "questions", n=cfg.questions,
                                                         reference=item.reference)), cfg.questions)
    if not questions:
        unparseable.append("questions")
    answers = [parsed(f"answer_{i}", parse_yes_no(ask(f"answer_{i}", _prompt(
        cfg, "answer", prediction=item.prediction, yes_no_question=q))))
        for i, q in enumerate(questions, 1)]
    complete = bool(answers) and None not in answers  # one unreadable answer: the item leaves s2

    # Eq. 13: G(x-, x) = 1 when the answer without the anomaly agrees with the answer (hallucination).
    consistent = None
    if not cfg.w3:
        reasons["s3"] = "skipped"
    elif item.prediction_without_anomaly is None:
        reasons["s3"] = "missing"
    else:
        consistent = parsed("consistency", parse_yes_no(ask("consistency", _prompt(
            cfg, "consistency", question=item.question, answer_a=item.prediction,
            answer_b=item.prediction_without_anomaly)), label="Consistent"))

    counts_of_item = {"key_total": counts[0] if counts else None, "key_included": counts[1] if counts else None,
                      "logic": logic, "yes": sum(answers) if complete else None,
                      "questions": len(answers) if complete else None,
                      "consistent": None if consistent is None else int(consistent)}
    # This answer's own Eqs. 11-14 (the corpus scores pool the counts: aggregate over all items).
    scores = aggregate([counts_of_item], cfg.w1, cfg.w2, cfg.w3)
    for name in ("s1", "s2", "s3"):
        if scores[name] is None and name not in reasons:
            reasons[name] = "unparseable"
    return {"id": item.id, "task": item.task, **{c: scores[c] for c in COMPONENTS}, **counts_of_item,
            "coverage": coverage, "yes_no_questions": questions, "answers": answers,
            "unparseable": unparseable, "reasons": reasons, "raw": raw}


def aggregate(items: Sequence[Mapping[str, Any]], w1: float, w2: float, w3: float) -> dict[str, Any]:
    """AnomEval's scores (ECVA Eqs. 11-14, in %) from per-answer judge counts.

    Args:
        items: One dict per answer: ``key_total`` (K_i), ``key_included`` (G(x_i ∩ K_i)),
            ``logic`` (0-5), ``yes`` (questions answered yes), ``questions`` (T_i asked and
            answered), ``consistent`` (G(x_i-, x_i): 1 the answer without the anomaly agrees,
            0 not). Any may be None (unparseable, or not asked): only the term needing it loses
            that item.
        w1, w2, w3: Weights of Eq. 14.

    Returns:
        ``{"s1": 100 * mean_i (key_included/key_total) * (logic/5)`` (Eq. 11),
        ``"s2": 100 * sum yes / sum questions`` (Eq. 12, pooled), ``"s3": -100 * mean consistent``
        (Eq. 13), ``"S": w1*s1 + w2*s2 + w3*s3`` (Eq. 14; None when a weighted term has no item),
        ``"n_items"``, and ``"n_s1"``, ``"n_s2"``, ``"n_s3"``: the items each term used}``.
    """
    s1 = [(it["key_included"] / it["key_total"]) * (it["logic"] / 5) for it in items
          if it.get("key_total") and it.get("key_included") is not None and it.get("logic") is not None]
    s2 = [(it["yes"], it["questions"]) for it in items if it.get("yes") is not None and it.get("questions")]
    s3 = [float(it["consistent"]) for it in items if it.get("consistent") is not None]
    out: dict[str, Any] = {
        "s1": 100 * sum(s1) / len(s1) if s1 else None,
        "s2": 100 * sum(y for y, _ in s2) / sum(t for _, t in s2) if s2 else None,
        "s3": -100 * sum(s3) / len(s3) if s3 else None,
    }
    terms = [(w, out[name]) for w, name in ((w1, "s1"), (w2, "s2"), (w3, "s3")) if w]
    out["S"] = float(sum(w * s for w, s in terms)) if all(s is not None for _, s in terms) else None
    out.update(n_items=len(items), n_s1=len(s1), n_s2=len(s2), n_s3=len(s3))
    return out


def summarise(rows: Sequence[dict[str, Any]], cfg: Any) -> dict[str, Any]:
    """:func:`aggregate` of scored rows with ``cfg``'s weights, plus ``n`` (rows),
    ``n_scored`` (rows whose own S is defined) and ``unparseable`` (rows with an unreadable step)."""
    out = aggregate(rows, cfg.w1, cfg.w2, cfg.w3)
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
    summary = {task: summarise([r for r in rows if r["task"] == task], cfg)
               for task in dict.fromkeys(r["task"] for r in rows)}
    summary["all"] = summarise(rows, cfg)
    return rows, summary
