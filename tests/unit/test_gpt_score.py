"""The GPT-based score: ECVA's prompts through a judge, robust parsing, unparseable answers counted."""

from __future__ import annotations

import pytest

from vau.errors import ConfigError
from vau.metrics.gpt_score import ASPECTS, gpt_score, parse_gpt_score


class FakeJudge:
    """Answers by looking the prediction up in ``answers``; records every prompt."""

    identity = "fake"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers, self.prompts = answers, []

    def complete(self, prompt: str) -> str:
        self.prompts.append(prompt)
        predicted = prompt.split("Predicted Answer: ", 1)[1].split("\n", 1)[0]
        return self.answers[predicted]


@pytest.mark.parametrize("text,want", [
    ("{'score': 4}", 4), ('{"score": 3}', 3), ("```python\n{'score': 5}\n```", 5),
    ("{''score': 4.8}", 4),  # the prompt's own example, stray quote and all; int() as ECVA's script does
    ("{'score': 2.9, 'reason': 'partly right'}", 2), ("Score: 1", 1), ("score = 0", 0),
    ("The answer is good.", None), ("{'score': 7}", None), ("{'score': -1}", None), ("{'score': '4'}", None),
    ("{'score': True}", None), ("", None), (None, None),
])
def test_parse_gpt_score(text, want):
    assert parse_gpt_score(text) == want


def test_prompt_is_ecvas_with_the_pair_filled_in():
    prompt = ASPECTS["correctness"].prompt("What happened {here}?", "A man fell.", "He fell {badly}.")
    system, user = prompt.split("\n\n", 1)
    assert system.startswith("You are an intelligent chatbot designed for evaluating the factual accuracy")
    assert system.endswith("- Evaluate the factual accuracy of the prediction compared to the answer.")
    assert "Question: What happened {here}?\nCorrect Answer: A man fell.\nPredicted Answer: He fell {badly}.\n\n" in user
    assert user.endswith("integer value between 0 and 5, with 5 indicating the highest level of factual consistency. "
                         "Please generate the response in the form of a Python dictionary string with keys 'score', "
                         "where its value is the factual accuracy score in INTEGER, not STRING.DO NOT PROVIDE ANY "
                         "OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. For example, "
                         "your response should look like this: {''score': 4.8}.")
    assert "where its value is contextual understanding score in INTEGER" in ASPECTS["context"].prompt("q", "a", "p")


def test_means_over_readable_answers_and_unparseable_counted():
    items = [{"id": f"v{i}", "question": f"q{i}", "reference": f"r{i}", "prediction": f"p{i}"} for i in range(4)]
    judge = FakeJudge({"p0": "{'score': 5}", "p1": "{'score': 2}", "p2": "I think it is fine", "p3": "{'score': 4.5}"})
    per_item, summary = gpt_score(items, judge)
    assert [i["score"] for i in per_item] == [5, 2, None, 4]
    assert summary == {"GPT-correctness": pytest.approx((5 + 2 + 4) / 3), "GPT": pytest.approx(11 / 3),
                       "GPT-n_scored": 3, "GPT-unparseable": 1}
    assert len(judge.prompts) == 4 and "Correct Answer: r1\nPredicted Answer: p1" in judge.prompts[1]


def test_several_aspects_and_an_aspect_without_a_readable_answer():
    items = [{"id": "v0", "question": "q", "reference": "r", "prediction": "p0"}]

    class ByAspect(FakeJudge):
        def complete(self, prompt: str) -> str:
            self.prompts.append(prompt)
            return "{'score': 3}" if "factual accuracy" in prompt else "{'score': 1}"

    _, summary = gpt_score(items, ByAspect({}), ["correctness", "temporal"])
    assert summary["GPT-correctness"] == 3 and summary["GPT-temporal"] == 1 and summary["GPT"] == 2
    _, none = gpt_score(items, FakeJudge({"p0": "no idea"}), ["correctness"])
    assert none["GPT"] is None and none["GPT-unparseable"] == 1
    with pytest.raises(ConfigError, match=r"^metrics.gpt_aspects: unknown aspect 'style'; expected some of correctness"):
        gpt_score(items, FakeJudge({}), ["style"])
