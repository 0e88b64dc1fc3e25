"""AnomShield: token layout (Eq. 1, pooling), placeholder filling, stage trainability, hand-off, export."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from vau.config import compose
from vau.constants import VISUAL_TOKEN
from vau.lit.module import VauModule as AnomShieldModule
from vau.lit.checkpoint import load_weights

TINY = ["experiment=tiny/anomshield_stage1"]
BASE_PREFIXES = ("temporal_embed", "spatial_embed", "connector.", "projector.")


def _module(overrides: list[str]) -> AnomShieldModule:
    # Random-init LLM: the tiny stages' stage-0 LLM export is not needed to check structure.
    torch.manual_seed(0)
    return AnomShieldModule(compose([*overrides, "model.llm.pretrained=null", "model.vision.pretrained=null"]))


def _trainable(m: AnomShieldModule) -> list[str]:
    return [n for n, p in m.model.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("experiment", ["tiny/anomshield_stage1", "tiny/anomshield_stage2", "anomshield/stage1",
                                        "anomshield/stage2"])
def test_stages_1_2_train_only_embeddings_connector_projector(experiment):
    # Full-size experiments keep their trainable patterns and LoRA switch on a tiny model.
    m = _module([f"experiment={experiment}", "model=tiny_anomshield", "data.decode.frames=8"] if "tiny" not in experiment
                else [f"experiment={experiment}"])
    names = _trainable(m)
    assert names and all(n.startswith(BASE_PREFIXES) for n in names)
    for prefix in BASE_PREFIXES:
        assert any(n.startswith(prefix) for n in names), prefix
    assert not any("lora_" in n for n, _ in m.model.named_parameters())  # no adapter before stage 3


@pytest.mark.parametrize("experiment", ["tiny/anomshield_stage3", "anomshield/stage3"])
def test_stage_3_adds_lora_and_vision_with_llm_base_frozen(experiment):
    m = _module([f"experiment={experiment}", "model=tiny_anomshield", "data.decode.frames=8", "optim.total_steps=100"]
                if "tiny" not in experiment else [f"experiment={experiment}"])
    names = set(_trainable(m))
    vision = {n for n, _ in m.model.named_parameters() if n.startswith("vision.")}
    assert vision and vision <= names  # the whole tower trains
    llm_trainable = {n for n in names if n.startswith("llm.")}
    assert llm_trainable and all("lora_" in n for n in llm_trainable)
    llm_all = [n for n, _ in m.model.named_parameters() if n.startswith("llm.")]
    assert len(llm_all) > len(llm_trainable)  # base weights exist and stay frozen
    assert all(n.startswith(BASE_PREFIXES) or n in vision or n in llm_trainable for n in names)
    assert m.cfg.optim.lr_mult["vision"] == 0.2
    # initial_lr: the group lr before the warmup schedule scales it
    groups = {g["name"]: g["initial_lr"] for g in m.configure_optimizers()["optimizer"].param_groups}
    vision_lrs = [lr for name, lr in groups.items() if name.startswith("vision")]
    assert vision_lrs and all(lr == pytest.approx(0.2 * m.cfg.optim.lr) for lr in vision_lrs)
    assert max(groups.values()) == pytest.approx(m.cfg.optim.lr)


class _Patches(torch.nn.Module):
    """Stand-in vision tower whose patch features say which frame and patch they are."""

    def __init__(self, grid: int, dim: int) -> None:
        super().__init__()
        self.grid, self.hidden_size = grid, dim
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, px: torch.Tensor) -> torch.Tensor:  # px: [(b t), 3, S, S], value = frame id
        frame = px[:, 0, 0, 0]
        m = self.grid * self.grid
        out = torch.zeros(px.shape[0], m, self.hidden_size)
        out[:, :, 0] = frame[:, None]
        out[:, :, 1] = torch.arange(m, dtype=torch.float)[None]
        return out


def test_token_layout_is_frame_major_then_pooled_per_frame():
    m = _module(TINY + ["model.connector.kind=mlp"]).model
    g, d = m.vision.grid, m.vision.hidden_size
    m.vision = _Patches(g, d)
    torch.nn.init.zeros_(m.temporal_embed)
    torch.nn.init.zeros_(m.spatial_embed)
    m.connector = torch.nn.Identity()
    m.projector = torch.nn.Identity()
    t = 3
    px = torch.arange(t, dtype=torch.float).view(1, t, 1, 1, 1).expand(2, t, 3, 8, 8)
    out = m.encode_visual(px)
    p = m.cfg.pool
    per_frame = (g // p) ** 2
    assert out.shape == (2, t * per_frame, d)
    # token k belongs to frame k // per_frame ...
    assert torch.equal(out[0, :, 0], torch.arange(t).repeat_interleave(per_frame).float())
    # ... and is the mean of a p x p block of the row-major patch grid (AvgPool3d((1, p, p)))
    idx = torch.arange(g * g, dtype=torch.float).view(g, g)
    want = torch.nn.functional.avg_pool2d(idx[None, None], p).flatten()
    assert torch.allclose(out[0, :per_frame, 1], want)


def test_embeddings_are_added_per_frame_and_per_patch():
    m = _module(TINY + ["model.connector.kind=mlp"]).model
    g, d = m.vision.grid, m.vision.hidden_size
    m.vision = _Patches(g, d)
    seen = {}
    m.connector = torch.nn.Identity()
    m.connector.register_forward_hook(lambda mod, args, out: seen.setdefault("x", args[0]))
    px = torch.zeros(1, 2, 3, 8, 8)
    m.encode_visual(px)
    x = seen["x"].view(1, 2, g * g, d)
    base = m.vision(px.flatten(0, 1)).view(1, 2, g * g, d)
    # ECVA Eq. 1: x[t, s] = f[t, s] + p_t[t] + p_s[s]
    want = base + m.temporal_embed[:2, None] + m.spatial_embed[None]
    assert torch.allclose(x, want)


def test_forward_fills_placeholders_and_learns_only_answers():
    mod = _module(["experiment=tiny/anomshield_stage3"])
    m = mod.model
    t = 4
    n_vis = t * m.tokens_per_frame
    ids = torch.tensor([[1] + [VISUAL_TOKEN] * n_vis + [5, 6, 7, 2]])
    labels = torch.tensor([[-100] * (1 + n_vis) + [5, 6, 7, 2]])
    px = torch.randn(1, t, 3, 64, 64)
    out = m(ids, torch.ones_like(ids), labels, px)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n for n, p in m.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("connector.") for n in grads) and any("lora_" in n for n in grads)
    assert any(n.startswith("vision.") for n in grads)
    assert not any(n.startswith("llm.") and "lora_" not in n for n in grads)
    with pytest.raises(ValueError, match="visual placeholders"):
        m(ids[:, :-3], torch.ones_like(ids[:, :-3]), None, torch.randn(1, t + 1, 3, 64, 64))


def test_stage_handoff_loads_previous_export(tmp_path):
    stage2 = _module(["experiment=tiny/anomshield_stage2"])
    for p in stage2.model.connector.parameters():
        torch.nn.init.normal_(p)
    stage2.export(tmp_path / "export")
    exported = load_file(str(tmp_path / "export" / "model.safetensors"))
    assert exported and all(k.startswith(BASE_PREFIXES) for k in exported)
    stage3 = _module(["experiment=tiny/anomshield_stage3"])
    loaded = load_weights(stage3.model, tmp_path / "export")
    assert set(loaded) == set(exported)
    own = dict(stage3.model.named_parameters())
    for k, v in exported.items():
        assert torch.equal(own[k].detach(), v), k


def test_missing_previous_stage_is_a_clear_error(vau_cli, tmp_path):
    proc = vau_cli("train", "experiment=tiny/anomshield_stage2", f"data.root={tmp_path}", "model.llm.pretrained=null", "model.vision.pretrained=null",
                   check=False)
    assert proc.returncode == 2
    assert "tiny_anomshield_stage1/export" in proc.stderr and proc.stderr.count("\n") == 1


def test_pretrained_towers_load_from_local_hf_folders(tmp_path):
    # Saved with save_pretrained, read back through the loading code the full-size configs use.
    from transformers import AutoConfig, AutoModelForCausalLM, CLIPVisionConfig, CLIPVisionModel

    from vau.data.text.tokenizer import ByteTokenizer

    torch.manual_seed(1)
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=2, image_size=32, patch_size=8))
    clip.save_pretrained(tmp_path / "clip")
    llm = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "mistral", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=128))
    llm.save_pretrained(tmp_path / "llm")
    ByteTokenizer(128).save(tmp_path / "llm")
    m = AnomShieldModule(compose(["experiment=tiny/anomshield_stage1", f"model.vision.pretrained={tmp_path / 'clip'}",
                                  f"model.llm.pretrained={tmp_path / 'llm'}",
                                  "model.vision.image_size=999"])).model  # a pretrained tower reads its own size
    assert m.vision.grid == 4 and m.vision.image_size == 32
    for name, p in clip.named_parameters():
        assert torch.equal(dict(m.vision.model.named_parameters())[name], p), name
    for name, p in llm.named_parameters():
        assert torch.equal(dict(m.llm.named_parameters())[name], p), name
    with pytest.raises(FileNotFoundError, match="model.vision.pretrained"):
        AnomShieldModule(compose(["experiment=tiny/anomshield_stage1", f"model.vision.pretrained={tmp_path / 'no'}",
                                  "model.llm.pretrained=null"]))


def _turns(question: str, answer: str) -> dict:
    return {"conversations": [{"from": "human", "value": f"<video>\n{question}"}, {"from": "gpt", "value": answer},
                              {"from": "human", "value": "And then?"}, {"from": "gpt", "value": "Nothing."}]}


def test_validation_samples_answer_the_first_turn_of_the_first_clips_greedily_in_eval_mode():
    from vau.data.media.video import frame_geometry, resize_normalize
    from vau.data.text.tokenizer import build_tokenizer
    from vau.families.anomshield.predict import generate_batch

    mod = _module(["experiment=tiny/anomshield_stage3", "init_from=null"])
    cfg, task, model = mod.cfg, mod.task, mod.model
    _, mean, std = frame_geometry(cfg.data.decode)
    raw = torch.randint(0, 256, (3, 4, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batch = {"key": ["v0", "v1", "v2"], "pixel_values": torch.stack([resize_normalize(r, 64, mean, std) for r in raw]),
             "annotation": [_turns("What happens?", "A fire."), _turns("Why?", "A spark."), _turns("Where?", "Here.")]}
    model.train()  # dropout on (connector drop_path, LoRA dropout): the hook must switch it off
    seen = []
    hook = model.connector.register_forward_pre_hook(lambda mod, args: seen.append((mod.training, torch.is_grad_enabled())))
    rows = task.validation_samples(model, batch, 2, max_new_tokens=6)
    hook.remove()
    assert seen == [(False, False)]  # the clips are encoded once, in eval mode, without autograd
    assert model.training  # the mode it found is restored
    assert [(r["id"], r["question"], r["reference"]) for r in rows] == [("v0", "What happens?", "A fire."),
                                                                         ("v1", "Why?", "A spark.")]
    model.eval()
    with torch.no_grad():
        want = generate_batch(model, cfg.model.template, build_tokenizer(cfg.model.llm),
                              ["<video>\nWhat happens?", "<video>\nWhy?"], batch["pixel_values"][:2], {"max_new_tokens": 6})
    assert [r["answer"] for r in rows] == want and all(want)
    for row, frames in zip(rows, raw):
        # the clip's 4 frames side by side, back in uint8 (64 px frames are not shrunk)
        assert row["image"].dtype.name == "uint8" and row["image"].shape == (64, 4 * 64, 3)
        assert (torch.from_numpy(row["image"]).int() - torch.cat(list(frames), dim=1).int()).abs().max() <= 1
    assert len(task.validation_samples(model, batch, 8, max_new_tokens=2)) == 3 and not model.training
    assert task.validation_samples(model, batch, 0, max_new_tokens=2) == []


def test_frame_strip_subsamples_and_shrinks_large_clips():
    from vau.data.media.video import frame_strip

    # 10 frames, frame t filled with the value t/10 (mean 0, std 1: the values are the pixels)
    clip = torch.arange(10, dtype=torch.float32).div(10).view(10, 1, 1, 1).expand(10, 3, 200, 100)
    strip = frame_strip(clip, [0.0] * 3, [1.0] * 3)
    assert strip.shape == (96, 4 * 48, 3)  # 4 frames, shrunk to 96 px high, aspect kept
    # the centres of 4 equal segments of 10 frames: 1, 3, 6, 8
    assert [int(strip[0, 48 * i + 1, 0]) for i in range(4)] == [round(255 * t / 10) for t in (1, 3, 6, 8)]
    assert frame_strip(clip[:2], [0.0] * 3, [1.0] * 3).shape == (96, 2 * 48, 3)  # fewer frames: all of them
