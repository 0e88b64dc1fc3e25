"""`vau infer` parts: frame plans, segment ranking, batched generation, questions, rank split, merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from vau.config import compose, compose_tool
from vau.families.anomshield.tools import AnomShieldInferConfig as InferConfig
from vau.data.media import sampling
from vau.families.anomshield.hard_prompt import dense_frames, parse_ranking, plan_frames, top_segments
from vau.eval.infer import PARTS, PREDICTIONS, merge, read_records
from vau.families.anomshield.predict import VideoQuestions, questions_for


def _cfg(*overrides: str):
    return compose_tool(InferConfig, "infer", "ecva", ["model=m", "out=o", *overrides])


def test_plan_covers_every_path_and_the_probe_avoids_the_anomaly():
    cfg = _cfg("hallucination=true")
    plan = plan_frames(100, 10.0, cfg, [[2.0, 3.5], [8.0, 9.0]])
    assert len(plan.coarse) == 8 and all(len(c) == 4 for c in plan.coarse)
    assert len(plan.dense) == 8 and all(len(d) == 8 for d in plan.dense)
    for (s, e), c, d in zip(plan.bounds, plan.coarse, plan.dense):
        assert all(s <= i < e for i in c + d)  # coarse and dense frames stay in their segment
    assert plan.uniform == sampling.uniform(100, 16)
    assert len(plan.no_anomaly) == 16 and not any(20 <= i < 35 or 80 <= i < 90 for i in plan.no_anomaly)
    wanted = set(plan.uniform) | set(plan.no_anomaly) | {i for x in plan.coarse + plan.dense for i in x}
    assert plan.needed() == sorted(wanted)
    assert plan.seconds(1) == [1.2, 2.5]  # frames [12, 25) at 10 fps
    assert dense_frames(plan, [5, 2]) == plan.dense[2] + plan.dense[5]
    assert plan_frames(100, 10.0, _cfg("hallucination=false"), [[2.0, 3.5]]).no_anomaly is None
    assert plan_frames(100, 10.0, cfg, [[0.0, 10.0]]).no_anomaly is None  # nothing left outside
    with pytest.raises(ValueError, match="n_segments"):
        plan_frames(5, 10.0, cfg, None)  # fewer frames than segments


def test_ranking_parse_and_top_segments():
    assert parse_ranking("Ranking: [3, 1, 2] because ...", 3) == [2, 0, 1]
    assert parse_ranking("[2,1]", 4) == [1, 0]  # partial lists are fine
    assert parse_ranking("[4, 1]", 3) is None  # out of range: not guessed
    assert parse_ranking("[1, 1, 2]", 3) is None
    assert parse_ranking("the second one", 3) is None
    assert top_segments([0.1, 0.9, 0.3, 0.9], 2) == [1, 3]
    assert top_segments([0.5, 0.2, 0.5, 0.7], 2) == [0, 3]  # a tie goes to the earlier segment


def test_batched_left_padded_generation_equals_one_by_one():
    from vau.data.text.tokenizer import build_tokenizer
    from vau.families.anomshield.predict import generate_batch
    from vau.lit.module import VauModule as AnomShieldModule

    torch.manual_seed(0)
    cfg = compose(["experiment=tiny/anomshield_stage1", "model.llm.pretrained=null", "model.vision.pretrained=null", "model.template=mistral"])
    model = AnomShieldModule(cfg).model.eval()
    tok = build_tokenizer(cfg.model.llm)
    questions = ["Why?", "<video>\nWhat is the result of the anomaly in this long question?", "When does it happen?"]
    pixels = torch.randn(3, 4, 3, 64, 64)
    batched = generate_batch(model, "mistral", tok, questions, pixels, {"max_new_tokens": 10})
    single = [generate_batch(model, "mistral", tok, [q], p[None], {"max_new_tokens": 10})[0]
              for q, p in zip(questions, pixels)]
    assert batched == single
    assert any(batched)  # the random model did produce text
    with pytest.raises(ValueError, match="2 questions for 3 clips"):
        generate_batch(model, "mistral", tok, questions[:2], pixels)


ANOMALY = {"anomaly": {"abnormal": True, "classes": ["Fighting"], "segments": [[2.0, 3.5]],
                       "description": "Two people fight.", "cause": "An argument.", "effect": "One falls."},
           "conversations": [{"from": "human", "value": "<video>\nIs there an anomaly?", "task": "detection"},
                             {"from": "gpt", "value": "Yes.", "task": "detection"},
                             {"from": "human", "value": "Why?", "task": "cause"},
                             {"from": "gpt", "value": "An argument.", "task": "cause"}]}


def test_questions_from_prompts_conversations_and_files():
    cfg = _cfg()
    qs = questions_for("v1", ANOMALY, cfg)
    assert [q["task"] for q in qs] == ["description", "cause", "result", "classification", "timestamp"]
    assert {q["id"] for q in qs} == {f"v1#{t}" for t in ("description", "cause", "result", "classification", "timestamp")}
    refs = {q["task"]: q["reference"] for q in qs}
    assert refs["cause"] == "An argument." and refs["result"] == "One falls." and refs["classification"] == "Fighting"
    assert refs["timestamp"] == "from 2.0 s to 3.5 s"
    assert qs[0]["prompt"] == cfg.task_prompts.description
    normal = {"anomaly": {"abnormal": False, "classes": [], "description": "Nothing happens."}}
    assert [q["task"] for q in questions_for("v2", normal, cfg)] == ["description", "classification"]
    assert len(questions_for("v3", None, cfg)) == 5  # a bare video is asked everything
    conv = questions_for("v1", ANOMALY, _cfg("questions_from=conversations", "tasks=[cause]"))
    assert conv == [{"id": "v1#1", "task": "cause", "prompt": "Why?", "reference": "An argument."}]
    with pytest.raises(ValueError, match="task_prompts.anything"):
        questions_for("v1", ANOMALY, _cfg("tasks=[anything]"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from vau.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, videos=8, images=2, val_fraction=0.5, maxcount=2, progress=False, log=lambda s: None)
    return root / "synth" / "shards"


def _keys(cfg, world):
    model_cfg = OmegaConf.create({"data": {"decode": {"processor": None, "size": 32}}})
    out = []
    for rank in range(world):
        out += [item["key"] for item in VideoQuestions(cfg, model_cfg, set(), rank, world)]
    return out


def test_every_video_is_read_by_exactly_one_rank(synth):
    cfg = _cfg(f"shards={synth}/videos-val-*.tar", "questions_from=conversations", "tasks=[detection]",
               "hard_prompt.coarse_frames=16", "frames=4")
    everything = _keys(cfg, 1)
    assert len(everything) == 4 and len(set(everything)) == 4
    for world in (2, 3):  # 2 shards: split by shard (2 ranks) or by sample (3 ranks)
        keys = _keys(cfg, world)
        assert sorted(keys) == sorted(everything), world


def test_done_questions_are_skipped_and_bad_videos_reported(synth, tmp_path):
    from vau.data.shards.manifest import Sample
    from vau.data.shards.writer import ShardWriter

    cfg = _cfg(f"shards={synth}/videos-val-000000.tar", "questions_from=conversations", "tasks=[detection,cause]",
               "hard_prompt.coarse_frames=16", "frames=4")
    model_cfg = OmegaConf.create({"data": {"decode": {"processor": None, "size": 32}}})
    items = list(VideoQuestions(cfg, model_cfg, set()))
    first = items[0]
    assert first["frames"].shape[1:] == (3, 32, 32) and first["frames"].shape[0] == len(first["index"])
    assert first["index"] == first["plan"].needed()
    done = {q["id"] for q in first["questions"]}
    again = list(VideoQuestions(cfg, model_cfg, done))
    assert [i["key"] for i in again] == [i["key"] for i in items[1:]]

    bad = tmp_path / "bad-%06d.tar"
    w = ShardWriter(str(bad))
    w.write(Sample("broken", {"mp4": b"not a video", "json": json.dumps(ANOMALY).encode()}))
    w.close()
    cfg = _cfg(f"shards={tmp_path}/bad-000000.tar")
    (item,) = list(VideoQuestions(cfg, model_cfg, set()))
    assert item["key"] == "broken" and "error" in item


def test_merge_keeps_one_record_per_id_and_survives_a_cut_line(tmp_path):
    (tmp_path / PARTS).mkdir()
    (tmp_path / PREDICTIONS).write_text(json.dumps({"id": "b#1", "answer": "old"}) + "\n")
    (tmp_path / PARTS / "rank0.jsonl").write_text(
        json.dumps({"id": "a#1", "answer": "x"}) + "\n" + json.dumps({"skipped": "c", "error": "bad mp4"}) + "\n")
    (tmp_path / PARTS / "rank1.jsonl").write_text(
        json.dumps({"id": "b#1", "answer": "dup"}) + "\n" + '{"id": "d#1", "ans')  # killed mid-line
    assert {r["id"] for r in read_records(tmp_path)} == {"a#1", "b#1"}
    summary = merge(tmp_path)
    assert summary == {"answers": 2, "skipped_videos": 1, "skipped": {"c": "bad mp4"}}
    lines = [json.loads(x) for x in (tmp_path / PREDICTIONS).read_text().splitlines()]
    assert lines == [{"id": "a#1", "answer": "x"}, {"id": "b#1", "answer": "old"}]
    assert not list((tmp_path / PARTS).glob("*.jsonl"))


def test_a_folder_of_videos_with_a_questions_file(synth, tmp_path):
    import tarfile

    videos = tmp_path / "videos"
    videos.mkdir()
    with tarfile.open(synth / "videos-val-000000.tar") as tar:
        mp4s = [m for m in tar.getmembers() if m.name.endswith(".mp4")]
        for m in mp4s:
            (videos / m.name).write_bytes(tar.extractfile(m).read())
    first, second = sorted(Path(m.name).stem for m in mp4s)[:2]
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"video": f"{first}.mp4", "question": "<video>\nWhat happens?", "task": "description", "reference": "x"},
        {"video": first, "question": "<video>\nWhy?", "id": "mine"},
        {"video": second, "question": "<video>\nIs it normal?"}]) + "\n")
    model_cfg = OmegaConf.create({"data": {"decode": {"processor": None, "size": 32}}})
    cfg = _cfg(f"videos={videos}", f"questions={questions}", "hard_prompt.coarse_frames=16", "frames=4")
    items = {i["key"]: i for i in VideoQuestions(cfg, model_cfg, set())}
    assert set(items) == {first, second}  # videos without questions are not decoded
    assert items[first]["questions"] == [
        {"id": f"{first}#1", "task": "description", "prompt": "<video>\nWhat happens?", "reference": "x"},
        {"id": "mine", "task": "qa", "prompt": "<video>\nWhy?", "reference": None}]
    assert items[first]["frames"].shape[1:] == (3, 32, 32)
    assert [q["id"] for q in items[second]["questions"]] == [f"{second}#3"]

    questions.write_text('{"video": "a.mp4"}\n')
    with pytest.raises(ValueError, match=r"q\.jsonl:1: expected"):
        VideoQuestions(_cfg(f"videos={videos}", f"questions={questions}"), model_cfg, set())
    with pytest.raises(ValueError, match="exactly one of shards"):
        VideoQuestions(_cfg(f"videos={videos}", f"shards={synth}"), model_cfg, set())


def test_the_default_ranker_is_an_llm_and_needs_one(tmp_path):
    """ECVA §IV-A ranks segment captions with a GPT model: the ecva default is the judge ranker,
    which refuses in one line without a judge model; the fast MiniLM ranker stays a choice."""
    from vau.errors import ConfigError
    from vau.families.anomshield.hard_prompt import RANKERS

    cfg = _cfg()
    assert cfg.hard_prompt.ranker == "judge"
    with pytest.raises(ConfigError, match=r"hard_prompt\.judge\.model is null"):
        RANKERS.get("judge")(cfg.hard_prompt, tmp_path)
    rank = RANKERS.get("text_encoder")(cfg.hard_prompt, tmp_path)
    scores = rank("Does a car crash?", ["two cars crash at a crossing", "a cat sleeps on a sofa"])
    assert scores[0] > scores[1]
    assert compose_tool(InferConfig, "infer", "tiny", ["model=m", "out=o"]).hard_prompt.ranker == "text_encoder"
