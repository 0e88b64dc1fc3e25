"""The family contract proven by something that is not AnomShield: a toy regression family.

The test writes a family folder (config, model, task, data) as a package outside `vau`, names
it by module path (`model.family=toyfam`) and drives it through the CLI only: train, stop +
resume (exactly the uninterrupted losses), infer (predictions equal an independent forward
pass of the exported weights; a re-run adds nothing), eval (the family's own score, equal to
a recomputation). Quality gate: the trained model's test MSE is under 10 % of the targets'
variance.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import read_losses, run_vau

pytestmark = pytest.mark.slow

FILES = {
    "__init__.py": '''
        """A toy regression family: y = w.x + b + noise, an MLP, MSE."""
        from vau.families import Family, Pipeline

        FAMILY = Family(config="toyfam.config:ToyRunConfig", task="toyfam.task:ToyTask",
                        data={"shards": Pipeline("toyfam.config:ToyDataConfig", "toyfam.data:ToyDataModule")})
        ''',
    "config.py": '''
        from dataclasses import dataclass, field

        from vau.config.data import ShardDataConfig
        from vau.config.schema import ModelConfig, RunConfig


        @dataclass
        class ToyModelConfig(ModelConfig):
            """The toy regressor."""

            family: str = "toyfam"
            """This family's module path."""
            dim: int = 4
            """Input features."""
            hidden: int = 32
            """Hidden width."""


        @dataclass
        class ToyDataConfig(ShardDataConfig):
            """Shards of {"x": [...], "y": ...} annotations."""


        @dataclass
        class ToyRunConfig(RunConfig):
            """Run config of the toy family."""

            model: ToyModelConfig = field(default_factory=ToyModelConfig)
            """Model section."""
        ''',
    "model.py": '''
        from torch import nn


        class ToyRegressor(nn.Module):
            def __init__(self, dim: int, hidden: int) -> None:
                super().__init__()
                self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

            def forward(self, x):
                return self.net(x).squeeze(-1)
        ''',
    "task.py": '''
        import torch
        import torch.nn.functional as F
        import torchmetrics

        from vau.families.task import Task


        class ToyTask(Task):
            batch_keys = ("x", "y")

            def build_model(self):
                from toyfam.model import ToyRegressor

                return ToyRegressor(self.cfg.model.dim, self.cfg.model.hidden)

            def losses(self, model, batch):
                pred = model(batch["x"])
                return {"loss": F.mse_loss(pred, batch["y"]), "mae": F.l1_loss(pred, batch["y"]).detach()}

            def metrics(self):
                return {"mse": torchmetrics.MeanSquaredError()}

            def update_metrics(self, metrics, model, batch):
                metrics["mse"].update(model(batch["x"]), batch["y"])

            def predict(self, model, batch):
                pred = model(batch["x"])
                return [{"id": k, "prediction": float(p), "target": float(y)}
                        for k, p, y in zip(batch["key"], pred, batch["y"])]

            @classmethod
            def score(cls, records):
                return {"mse": sum((r["prediction"] - r["target"]) ** 2 for r in records) / len(records)}
        ''',
    "data.py": '''
        import json

        import torch

        from vau.data.loading.shard_datamodule import ShardDataModule


        def decode(sample):
            ann = json.loads(sample["json"])
            return {"key": sample["__key__"], "x": torch.tensor(ann["x"], dtype=torch.float32),
                    "y": torch.tensor(float(ann["y"]))}


        def collate(samples):
            return {"key": [s["key"] for s in samples], "x": torch.stack([s["x"] for s in samples]),
                    "y": torch.stack([s["y"] for s in samples])}


        class ToyDataModule(ShardDataModule):
            collate_fn = staticmethod(collate)

            def decoder(self, train):
                return decode
        ''',
}

W, B = np.array([1.5, -2.0, 0.5, 1.0]), 0.3


def _shards(folder: Path, split: str, n_shards: int, per_shard: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        with tarfile.open(folder / f"{split}-{s:06d}.tar", "w") as tar:
            for i in range(per_shard):
                x = rng.normal(size=4)
                body = json.dumps({"x": x.tolist(), "y": float(x @ W + B + 0.05 * rng.normal())}).encode()
                info = tarfile.TarInfo(f"{split}{s}_{i:04d}.json")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return str(folder / f"{split}-{{000000..{n_shards - 1:06d}}}.tar")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    pkg = root / "pkg" / "toyfam"
    pkg.mkdir(parents=True)
    for name, body in FILES.items():
        (pkg / name).write_text(textwrap.dedent(body).lstrip())
    data = root / "data"
    train, val = _shards(data, "train", 4, 32, seed=0), _shards(data, "val", 2, 16, seed=1)
    test = _shards(data, "test", 2, 20, seed=2)
    conf = root / "toy.yaml"
    conf.write_text(textwrap.dedent(f"""\
        model: {{family: toyfam}}
        data:
          root: {data}
          batch_size: 8
          num_workers: 2
          samples_per_epoch: 64
          train: [{{shards: "{train}"}}]
          val: [{{shards: "{val}"}}]
        optim: {{lr: 0.01, scheduler: constant}}
        trainer: {{accelerator: cpu, devices: 1, max_steps: 60, val_check_interval: 30, check_val_every_n_epoch: null,
                   progress_bar: none}}
        ckpt: {{every_n_steps: 20}}
        logger: {{wandb: {{mode: disabled}}}}
        """))
    env = {"PYTHONPATH": os.pathsep.join([str(root / "pkg"), os.environ.get("PYTHONPATH", "")])}
    return {"root": root, "conf": conf, "env": env, "test": test}


def _vau(toy, *args, check=True):
    return run_vau(toy["root"] / "runs", *args, check=check, env=toy["env"])


@pytest.fixture(scope="module")
def runs(toy):
    full, split = toy["root"] / "runs" / "full", toy["root"] / "runs" / "split"
    _vau(toy, "train", "--config", str(toy["conf"]), f"run.dir={full}")
    # Stop at step 25 (a step checkpoint at 20), then resume to 60: the remaining curve must match.
    _vau(toy, "train", "--config", str(toy["conf"]), f"run.dir={split}", "trainer.max_steps=25",
         "optim.total_steps=60", "ckpt.export=false")
    _vau(toy, "train", "--config", str(toy["conf"]), f"run.dir={split}", "resume=auto")
    return full, split


def test_toy_family_trains_logs_every_term_and_resumes_exactly(runs):
    full, split = runs
    a, b = read_losses(full / "metrics.csv"), read_losses(split / "metrics.csv")
    assert sorted(a) == sorted(b) == list(range(60))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-6
    assert set(read_losses(full / "metrics.csv", "train/mae")) == set(range(60))  # every loss term is logged
    val = read_losses(full / "metrics.csv", "val/mse")  # the task's torchmetric, once per validation
    assert len(val) == 2 and val[max(val)] < val[min(val)]
    assert (full / "export" / "model.safetensors").is_file() and (full / "export" / "config.yaml").is_file()


def test_toy_family_predicts_and_evaluates_through_the_cli(runs, toy):
    full, _ = runs
    out, evald = toy["root"] / "infer", toy["root"] / "eval"
    args = ("infer", f"model={full}", f"shards={toy['test']}", f"out={out}", "batch_size=8", "num_workers=2",
            "trainer.accelerator=cpu", "trainer.precision=32-true")
    _vau(toy, *args)
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 40 and len({r["id"] for r in records}) == 40
    assert json.loads((out / "infer.json").read_text())["family"] == "toyfam"
    # Independent forward pass of the exported weights.
    w = load_file(str(full / "export" / "model.safetensors"))
    x = torch.tensor([json.loads(line)["x"] for line in _test_annotations(toy["test"])], dtype=torch.float64)
    ids = [k for k in _test_keys(toy["test"])]
    hidden = torch.tanh(x @ w["net.0.weight"].double().T + w["net.0.bias"].double())
    expected = dict(zip(ids, (hidden @ w["net.2.weight"].double().T + w["net.2.bias"].double()).squeeze(-1).tolist()))
    assert max(abs(r["prediction"] - expected[r["id"]]) for r in records) < 1e-4
    variance = float(np.var([r["target"] for r in records]))
    mse = sum((r["prediction"] - r["target"]) ** 2 for r in records) / len(records)
    assert mse < 0.1 * variance, f"the toy did not learn: test MSE {mse:.3f}, target variance {variance:.3f}"

    _vau(toy, *args)  # a re-run finds every id written and adds nothing
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 40

    proc = _vau(toy, "eval", f"predictions=[{out}]", "names=[toy]", f"out={evald}",
                "wandb=disabled", "progress=false")
    results = json.loads((evald / "results.json").read_text())
    assert results["models"]["toy"]["tasks"]["toyfam"] == {"mse": pytest.approx(mse), "n": 40}
    assert "toyfam mse" in proc.stdout


def _test_members(spec: str):
    import braceexpand

    for url in braceexpand.braceexpand(spec):
        with tarfile.open(url) as tar:
            for m in tar.getmembers():
                yield m.name[:-len(".json")], tar.extractfile(m).read().decode()


def _test_keys(spec: str):
    return [k for k, _ in _test_members(spec)]


def _test_annotations(spec: str):
    return [body for _, body in _test_members(spec)]
