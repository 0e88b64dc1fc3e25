"""wandb for AnomShield runs: a tiny training run logs answers for fixed held-out clips at each
validation (val_samples.jsonl and a wandb table, read back from the offline files), and `vau
eval` of its export's predictions logs into the training run's wandb group, linked to the export."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_vau
from vau.config import compose
from vau.lit.samples import SAMPLES_FILE, TABLE_KEY
from vau.lit.wandb_files import artifacts, history, run_info, segments

GROUP, PROJECT = "val-samples-group", "vau-val-samples"
SAMPLES = 3
"""Clips logged: more than one validation batch (data.batch_size=2), so the second batch is used too."""
TOKENS = 8


def _flush_wandb() -> None:
    # wandb's service writes the offline .wandb log behind the run; its teardown (what the
    # exit of `vau train` / `vau eval` does) waits until it is all on disk.
    import wandb

    wandb.teardown()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step tiny AnomShield stage-3 run validating every 2 steps, wandb offline: (config, run dir)."""
    from vau.data.synth import generate
    from vau.train import train

    root = tmp_path_factory.mktemp("val_samples")
    generate(root / "data", videos=8, images=4, val_fraction=0.5, maxcount=2, progress=False, log=lambda s: None)
    run = root / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_DATA_DIR", str(root / "wandb_data"))  # wandb's staged table files: not in $HOME
        cfg = compose(["experiment=tiny/anomshield_stage3", f"data.root={root / 'data'}", f"run.dir={run}",
                       "model.llm.pretrained=null", "model.vision.pretrained=null", "init_from=null", "trainer.max_steps=4",
                       "trainer.val_check_interval=2", "optim.total_steps=4", "ckpt.every_n_steps=4",
                       f"logger.wandb.group={GROUP}", f"logger.wandb.project={PROJECT}",
                       f"logger.val_samples={SAMPLES}", f"logger.val_samples_max_new_tokens={TOKENS}",
                       "trainer.progress_bar=none"])
        train(cfg)
        _flush_wandb()
        yield cfg, run


def _first_val_clips(cfg, n: int) -> list[dict]:
    """The first ``n`` samples of the validation stream (one process), decoded as training does."""
    from vau.families import get_family

    dm = get_family(cfg.model.family).build_datamodule(cfg)
    out: list[dict] = []
    for batch in dm.val_dataloader():
        for i, key in enumerate(batch["key"]):
            out.append({"key": key, "pixel_values": batch["pixel_values"][i], "annotation": batch["annotation"][i]})
        if len(out) >= n:
            return out[:n]
    raise AssertionError("the validation stream has fewer clips than asked")


def _shard_annotations(shards: list[Path]) -> dict[str, dict]:
    out = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    out[m.name[:-len(".json")]] = json.load(tar.extractfile(m))
    return out


def test_each_validation_logs_answers_for_the_same_first_clips(trained):
    from PIL import Image

    from vau.data.text.tokenizer import build_tokenizer
    from vau.export import load_export
    from vau.families.anomshield.predict import generate_batch

    cfg, run = trained
    rows = [json.loads(line) for line in (run / SAMPLES_FILE).read_text().splitlines()]
    assert [r["step"] for r in rows] == [2] * SAMPLES + [4] * SAMPLES  # one validation every 2 steps
    clips = _first_val_clips(cfg, SAMPLES)
    ids = [c["key"] for c in clips]
    assert [r["id"] for r in rows] == ids * 2  # the same clips each time: the first of the val stream
    # question and reference: each clip's first conversation turn, as stored in the shard
    annotations = _shard_annotations(sorted((Path(cfg.data.root) / "synth" / "shards").glob("videos-val-*.tar")))
    for r in rows:
        human, gpt = annotations[r["id"]]["conversations"][:2]
        assert r["question"] == human["value"].replace("<video>", "").strip() and r["reference"] == gpt["value"]
    # the step-4 answers are the greedy answers of the final (exported) weights
    _, _, model = load_export(run)
    tok = build_tokenizer(cfg.model.llm)
    with torch.no_grad():
        want = [generate_batch(model, cfg.model.template, tok, [c["annotation"]["conversations"][0]["value"]],
                               c["pixel_values"][None], {"max_new_tokens": TOKENS})[0] for c in clips]
    assert [r["answer"] for r in rows[SAMPLES:]] == want

    # wandb: a table at each validation step, in the run's offline log
    run_id = (run / "wandb" / "run_id").read_text().strip()
    (log,) = segments(run / "wandb", run_id)
    steps = [row["_step"] for row in history(log) if row.get(f"{TABLE_KEY}/_type") == "table-file"]
    assert steps == [2, 4]
    assert all(row[f"{TABLE_KEY}/nrows"] == SAMPLES for row in history(log) if f"{TABLE_KEY}/nrows" in row)
    tables = [a for a in artifacts(log) if a["type"] == "run_table"]
    assert len(tables) == 2
    for step, table in zip((2, 4), tables):
        body = json.loads(Path(table["files"]["val/samples.table.json"]).read_text())
        assert body["columns"] == ["step", "id", "frames", "question", "answer", "reference"]
        logged = [r for r in rows if r["step"] == step]
        assert [[d[0], d[1], d[3], d[4], d[5]] for d in body["data"]] == \
            [[step, r["id"], r["question"], r["answer"], r["reference"]] for r in logged]
        for d in body["data"]:  # the frame strip: 4 of the clip's frames of 64 px, side by side
            image = Image.open(table["files"][d[2]["path"]])
            assert image.size == (4 * 64, 64) and len(set(image.getdata())) > 1


def test_eval_of_the_exports_predictions_joins_the_training_runs_group(trained, tmp_path):
    from vau.config import compose_tool
    from vau.eval.evaluate import evaluate
    from vau.eval.infer import run_infer
    from vau.families.anomshield.tools import AnomShieldEvalConfig, AnomShieldInferConfig

    cfg, run = trained
    shards = Path(cfg.data.root) / "synth" / "shards" / "videos-val-*.tar"
    infer = tmp_path / "infer"
    run_infer(compose_tool(AnomShieldInferConfig, "infer", "tiny", [
        f"model={run}", f"shards={shards}", f"out={infer}", "sampling=uniform", "tasks=[detection]",
        "hallucination=false", "generation.max_new_tokens=4", "num_workers=0", "progress=false"]))
    assert json.loads((infer / "infer.json").read_text())["model"] == str((run / "export").resolve())

    out = tmp_path / "eval"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        evaluate(compose_tool(AnomShieldEvalConfig, "eval", "ecva", [
            f"predictions=[{infer}]", f"out={out}", "anomeval.enabled=false", "caption_tasks=[]",
            "wandb=offline", "progress=false"]))
        _flush_wandb()
    (log,) = (out / "wandb").glob("offline-run-*/*.wandb")
    info = run_info(log)
    training = run_info(segments(run / "wandb", (run / "wandb" / "run_id").read_text().strip())[0])
    assert training["group"] == GROUP and training["project"] == PROJECT
    assert info["group"] == GROUP and info["project"] == PROJECT and info["job_type"] == "eval"
    assert info["run_id"] != training["run_id"]
    assert info["config"]["export"] == str((run / "export").resolve())
    assert info["config"]["training_run"] == training["run_id"]
    assert info["config"]["training_run_dir"] == str(run.resolve())


@pytest.mark.slow  # two DeepSpeed processes on CPU: minutes on 2 cores
def test_zero3_generates_on_every_rank_in_lockstep_and_rank_0_logs(trained, tmp_path):
    cfg, _ = trained
    run = tmp_path / "zero3"
    # Every weight partitioned, the tiny ones too (DeepSpeed keeps weights under 1e5 elements
    # whole on each rank by default; the full-size model's spatial embedding table is over it).
    zero3 = json.loads((REPO / "conf" / "trainer" / "deepspeed" / "zero3.json").read_text())
    zero3["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    (tmp_path / "zero3.json").write_text(json.dumps(zero3))
    run_vau(tmp_path / "runs", "train", "experiment=tiny/anomshield_stage3", "trainer=deepspeed_zero3",
            f"trainer.deepspeed.config={tmp_path / 'zero3.json'}",
            "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true", f"data.root={cfg.data.root}",
            "data.batch_size=2",  # 2 ranks x 2: the 4 training videos are one global batch
            f"run.dir={run}", "model.llm.pretrained=null", "model.vision.pretrained=null", "init_from=null", "trainer.max_steps=2",
            "trainer.val_check_interval=2", "optim.total_steps=2", "ckpt.every_n_steps=2", "logger.wandb.mode=disabled",
            f"logger.val_samples={SAMPLES}", f"logger.val_samples_max_new_tokens={TOKENS}", "trainer.progress_bar=none")
    rows = [json.loads(line) for line in (run / SAMPLES_FILE).read_text().splitlines()]
    # Rank 0 reads the first of the 2 val shards (2 clips, one batch): its clips only, both of them.
    with tarfile.open(Path(cfg.data.root) / "synth" / "shards" / "videos-val-000000.tar") as tar:
        keys = list(dict.fromkeys(m.name.split(".")[0] for m in tar.getmembers()))
    assert [(r["step"], r["id"]) for r in rows] == [(2, k) for k in keys[:2]]
    assert all(isinstance(r["answer"], str) for r in rows)
