"""Killing `vau eval` mid-way and re-running gives the same results with no repeated judge calls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REPO
from eval_fakes import JUDGE_KEY_ENV, JudgeServer, judge_answer, write_predictions

KILL_AT = 40
"""The request during which `vau eval` is killed (a full run sends 156)."""


def _rows(model: str) -> list[dict]:
    return [{"id": f"v{v}#{t}", "video": f"v{v}", "task": task, "prompt": f"What is the {task} in video {v}?",
             "answer": f"{model} says the {task} of video {v} is a fall", "reference": f"the {task} of video {v}",
             "answer_no_anomaly": f"{model} says nothing happens in video {v}"}
            for v in range(6) for t, task in enumerate(("description", "cause"))]


def _command(tmp_path: Path, out: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "vau", "eval", "eval=http", f"out={out}",
            f"predictions=[{tmp_path / 'A'},{tmp_path / 'B'}]", "caption_tasks=[]", "wandb=disabled", "progress=false",
            f"anomeval.judge.base_url={url}", "anomeval.judge.model=fake", f"anomeval.judge.api_key_env={JUDGE_KEY_ENV}"]


def _run(cmd: list[str], env: dict, out: Path) -> dict:
    proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_killed_eval_reruns_to_the_same_results_without_repeated_judge_calls(tmp_path):
    for model in ("A", "B"):
        write_predictions(tmp_path / model, _rows(model), broken=False)
    env = dict(os.environ, **{JUDGE_KEY_ENV: "test-key", "PYTHONUNBUFFERED": "1"})

    with JudgeServer(judge_answer) as server:
        clean = _run(_command(tmp_path, tmp_path / "clean", server.url), env, tmp_path / "clean")
    assert clean["judge_calls"] == len(server.requests) > KILL_AT

    # The KILL_AT-th request is held unanswered while the process is killed, so the kill lands
    # mid-way at a known point: every earlier answer was received (and cached), this one never is.
    reached, release = threading.Event(), threading.Event()

    def held(prompt: str) -> str:
        if len(server.requests) == KILL_AT:
            reached.set()
            release.wait(60)
        return judge_answer(prompt)

    out = tmp_path / "resumed"
    with JudgeServer(held) as server:
        cmd = _command(tmp_path, out, server.url)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        deadline = time.time() + 60
        while not reached.wait(0.1):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        release.set()
        assert not (out / "results.json").exists()
        resumed = _run(cmd, env, out)

    prompts = [r["messages"][-1]["content"] for r in server.requests]
    withheld = prompts[KILL_AT - 1]
    # Only the prompt whose answer the killed process never received is asked again.
    assert len(prompts) == len(set(prompts)) + 1 and prompts.count(withheld) == 2
    assert resumed["judge_calls"] == len(prompts) - KILL_AT == clean["judge_calls"] - (KILL_AT - 1)
    assert resumed["models"] == clean["models"]
    assert all(i["S"] is not None for m in resumed["models"].values() for i in m["anomeval_items"])
