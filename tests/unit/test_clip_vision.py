"""The `clip_vision` family: labels from annotations, config checks, training, and an export that
loads back as a plain CLIP vision tower (what the demo's AnomShield stages read)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from conftest import REPO, read_losses, run_vau

from vau.config import compose
from vau.errors import ConfigError
from vau.families.clip_vision.data import clip_label

CLASSES = ["normal", "collision", "fire", "fall", "sudden_run"]


def test_clip_label_reads_the_anomaly_block():
    assert clip_label({"anomaly": {"abnormal": False, "classes": []}}, CLASSES, "normal") == 0
    assert clip_label({"anomaly": {"abnormal": True, "classes": ["fall", "fire"]}}, CLASSES, "normal") == 3
    with pytest.raises(ValueError, match="'theft' is not one of data.classes"):
        clip_label({"anomaly": {"abnormal": True, "classes": ["theft"]}}, CLASSES, "normal")
    with pytest.raises(ValueError, match="no anomaly block"):
        clip_label({"caption": "x"}, CLASSES, "normal")


@pytest.mark.parametrize("override, message", [
    ("data.normal=calm", r"data.normal='calm' is not one of data.classes"),
    ("data.classes=[normal]", r"expected two or more distinct class names"),
    ("model.pool=median", r"model.pool='median': expected one of max, mean"),
])
def test_bad_settings_fail_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        compose(["experiment=tiny/anomshield_vision", override])


def test_tower_sizes_are_the_tiny_anomshield_ones():
    # The demo's stages load this tower; their random-init twin (tests) must be the same model.
    clip = yaml.safe_load((REPO / "conf" / "model" / "tiny_clip_vision.yaml").read_text())
    anomshield = yaml.safe_load((REPO / "conf" / "model" / "tiny_anomshield.yaml").read_text())
    assert clip["vision"] == anomshield["vision"]
    assert clip["grid_pool"] == anomshield["pool"]  # pretrained on the features as AnomShield pools them


def test_grid_pool_averages_blocks_then_takes_the_max():
    from vau.families.clip_vision.model import ClipClassifier
    from vau.models.settings import VisionSection
    from vau.models.vision import build_clip_vision

    torch.manual_seed(0)
    encoder = build_clip_vision(VisionSection(image_size=16, patch_size=4, hidden_size=8, intermediate_size=16,
                                              num_hidden_layers=2, num_attention_heads=2)).eval()
    model = ClipClassifier(encoder, 3, "max", grid_pool=2).eval()
    x = torch.randn(2, 3, 3, 16, 16)  # 2 clips of 3 frames
    with torch.no_grad():
        patches = encoder(x.flatten(0, 1)).reshape(2, 3, 4, 4, 8)  # 4x4 grid, row-major
        blocks = patches.reshape(2, 3, 2, 2, 2, 2, 8).mean((3, 5))  # 2x2 blocks of the grid
        want = model.head(blocks.reshape(2, -1, 8).amax(1))
        assert torch.allclose(model(x), want, atol=1e-5)


def test_trains_scores_and_exports_a_clip_vision_model(tmp_path):
    from transformers import CLIPVisionModel

    from vau.data.synth import generate
    from vau.export import load_export
    from vau.families.clip_vision.task import ClipVisionTask
    from vau.models.settings import VisionSection
    from vau.models.vision import build_clip_vision

    data, runs = tmp_path / "data", tmp_path / "runs"
    generate(data, videos=12, images=2, val_fraction=0.5, maxcount=3, progress=False, log=lambda s: None)
    run_vau(runs, "train", "experiment=tiny/anomshield_vision", f"data.root={data}", "trainer.max_steps=6",
            "optim.total_steps=6", "trainer.val_check_interval=6", "ckpt.every_n_steps=6", "data.batch_size=2",
            "data.num_workers=0", "trainer.progress_bar=none", "logger.wandb.mode=disabled")
    run = runs / "tiny_anomshield_vision"
    assert len(read_losses(run / "metrics.csv")) == 6
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val/acc", "val/detection"} <= set(header)

    # export/hf is a CLIPVisionModel folder: loaded as model.vision.pretrained, the same features
    _, _, model = load_export(run)
    tower = build_clip_vision(VisionSection(pretrained=str(run / "export" / "hf")))
    plain = CLIPVisionModel.from_pretrained(str(run / "export" / "hf"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = plain(pixel_values=x, output_hidden_states=True).hidden_states[-2][:, 1:]
        assert torch.allclose(model.encoder(x), want, atol=1e-5)
        assert torch.allclose(tower(x), want, atol=1e-5)

    # vau infer writes one record per held-out clip; vau eval's accuracy is the hit rate
    out = tmp_path / "infer"
    run_vau(runs, "infer", f"model={run}", f"shards={data}/synth/shards/videos-val-*.tar", f"out={out}")
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["label"] in CLASSES and r["pred"] in CLASSES for r in rows)
    assert all(abs(sum(r["probs"]) - 1) < 1e-4 for r in rows)
    scores = ClipVisionTask.score(rows)
    assert scores["accuracy"] == pytest.approx(100 * sum(r["label"] == r["pred"] for r in rows) / 6)
