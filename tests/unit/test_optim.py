"""Parameter groups (lr_mult, decay, frozen) and the warmup schedules."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from vau.config.schema import OptimConfig
from vau.lit.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler, param_groups


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.vision_tower = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.vision_tower.add_module("head", nn.Linear(4, 3))
        self.connector = nn.Linear(3, 5)
        self.llm = nn.Linear(5, 2)
        self.vision = nn.Linear(2, 2)  # shares a name prefix with vision_tower, not a dotted one


def _cfg(**kw):
    return OmegaConf.structured(OptimConfig(**kw))


def _by_param(groups):
    return {id(p): g for g in groups for p in g["params"]}


def _names_in(model, group):
    ids = {id(p) for p in group["params"]}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_lr_mult_scales_only_its_prefix():
    model = Tiny()
    groups = param_groups(model.named_parameters(), _cfg(lr=0.01, lr_mult={"vision_tower": 0.2}))
    owner = _by_param(groups)
    for name, p in model.named_parameters():
        want = 0.2 * 0.01 if name.startswith("vision_tower.") else 0.01
        assert owner[id(p)]["lr"] == pytest.approx(want), name
    # every trainable parameter is in exactly one group
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(owner) == len(list(model.parameters()))
    names = {g["name"] for g in groups}
    assert names == {"vision_tower", "default"}
    vt = next(g for g in groups if g["name"] == "vision_tower")
    assert _names_in(model, vt) == sorted(n for n, _ in model.named_parameters() if n.startswith("vision_tower."))
    # "vision" (a plain name prefix of vision_tower) is not matched by the vision_tower rule
    assert owner[id(model.vision.weight)]["lr"] == pytest.approx(0.01)


def test_longest_prefix_wins():
    model = Tiny()
    cfg = _cfg(lr=1.0, lr_mult={"vision_tower": 0.2, "vision_tower.head": 0.5, "llm": 3.0})
    owner = _by_param(param_groups(model.named_parameters(), cfg))
    for name, p in model.named_parameters():
        if name.startswith("vision_tower.head."):
            want = 0.5
        elif name.startswith("vision_tower."):
            want = 0.2
        elif name.startswith("llm."):
            want = 3.0
        else:
            want = 1.0
        assert owner[id(p)]["lr"] == pytest.approx(want), name


def test_exact_parameter_name_prefix():
    model = Tiny()
    owner = _by_param(param_groups(model.named_parameters(), _cfg(lr=1.0, lr_mult={"llm.bias": 0.1})))
    assert owner[id(model.llm.bias)]["lr"] == pytest.approx(0.1)
    assert owner[id(model.llm.weight)]["lr"] == pytest.approx(1.0)


def test_frozen_parameters_are_excluded():
    model = Tiny()
    for p in model.vision_tower.parameters():
        p.requires_grad_(False)
    groups = param_groups(model.named_parameters(), _cfg(lr=1.0, lr_mult={"connector": 2.0}))
    in_groups = {id(p) for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in in_groups) == p.requires_grad, name
    # a prefix whose parameters are all frozen matches no trainable parameter
    with pytest.raises(ValueError, match="vision_tower"):
        param_groups(model.named_parameters(), _cfg(lr=1.0, lr_mult={"vision_tower": 0.2}))


def test_unused_prefix_raises():
    model = Tiny()
    with pytest.raises(ValueError) as ei:
        param_groups(model.named_parameters(), _cfg(lr=1.0, lr_mult={"vision_towr": 0.2, "llm": 1.0}))
    assert "vision_towr" in str(ei.value)
    assert "'llm'" not in str(ei.value)


def test_no_trainable_parameters_raises():
    model = Tiny().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        param_groups(model.named_parameters(), _cfg())


def test_weight_decay_only_on_matrices():
    model = Tiny()
    groups = param_groups(model.named_parameters(), _cfg(lr=1.0, weight_decay=0.1, lr_mult={"llm": 0.5}))
    owner = _by_param(groups)
    for name, p in model.named_parameters():
        g = owner[id(p)]
        assert g["weight_decay"] == (0.1 if p.ndim >= 2 else 0.0), name
        assert g["lr"] == pytest.approx(0.5 if name.startswith("llm.") else 1.0), name
    assert {g["name"] for g in groups} == {"default", "default_no_decay", "llm", "llm_no_decay"}
    # without weight decay: nothing decays and the groups are not split
    groups = param_groups(model.named_parameters(), _cfg(lr=1.0, weight_decay=0.0))
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0 and groups[0]["name"] == "default"


def test_build_optimizer_applies_groups():
    model = Tiny()
    opt = build_optimizer(model, _cfg(name="adamw", lr=0.1, weight_decay=0.01, betas=[0.8, 0.9], eps=1e-6,
                                      lr_mult={"connector": 0.5}))
    assert isinstance(opt, torch.optim.AdamW)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["connector"] == pytest.approx(0.05) and lrs["default"] == pytest.approx(0.1)
    assert all(g["betas"] == (0.8, 0.9) and g["eps"] == 1e-6 for g in opt.param_groups)
    sgd = build_optimizer(model, _cfg(name="sgd", lr=0.1, betas=[0.7, 0.9]))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.7


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(KeyError) as ei:
        build_optimizer(Tiny(), _cfg(name="adamx"))
    msg = ei.value.args[0]
    assert "adamx" in msg
    for name in OPTIMIZERS.names():
        assert name in msg
    assert "adamw" in msg


def test_unknown_scheduler_lists_valid_names():
    opt = build_optimizer(Tiny(), _cfg())
    with pytest.raises(KeyError) as ei:
        build_scheduler(opt, _cfg(scheduler="cosin"), total_steps=10)
    msg = ei.value.args[0]
    for name in SCHEDULERS.names():
        assert name in msg
    assert set(SCHEDULERS.names()) >= {"constant", "cosine", "linear"}


def _cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return step / warmup
    progress = (step - warmup) / (total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def _linear(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / (total - warmup))


def _trace(opt, sched, steps: int) -> list[list[float]]:
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("kind,form", [("cosine", _cosine), ("linear", _linear)])
def test_schedule_matches_closed_form(kind, form):
    model = Tiny()
    cfg = _cfg(lr=0.2, lr_mult={"vision_tower": 0.25}, scheduler=kind, warmup_steps=4, total_steps=20)
    opt = build_optimizer(model, cfg)
    base = {g["name"]: g["lr"] for g in opt.param_groups}
    assert base == pytest.approx({"vision_tower": 0.05, "default": 0.2})
    sched = build_scheduler(opt, cfg, total_steps=999)  # cfg.total_steps wins over the estimate
    trace = _trace(opt, sched, 21)
    for step, lrs in enumerate(trace):
        for g, lr in zip(opt.param_groups, lrs):
            assert lr == pytest.approx(base[g["name"]] * form(step, 4, 20), abs=1e-12), (step, g["name"])
    assert trace[0] == [0.0, 0.0]
    assert trace[4] == pytest.approx([base[g["name"]] for g in opt.param_groups])
    assert trace[20] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_constant_schedule_with_warmup():
    cfg = _cfg(lr=0.3, scheduler="constant", warmup_steps=3)
    opt = build_optimizer(Tiny(), cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    got = [lrs[0] for lrs in _trace(opt, sched, 8)]
    assert got == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3])


def test_warmup_ratio_resolution():
    # warmup_ratio * total steps, total from the trainer's estimate when total_steps is null
    cfg = _cfg(lr=1.0, warmup_ratio=0.1, total_steps=None)
    opt = build_optimizer(Tiny(), cfg)
    sched = build_scheduler(opt, cfg, total_steps=50)
    got = [lrs[0] for lrs in _trace(opt, sched, 51)]
    assert got == pytest.approx([_cosine(s, 5, 50) for s in range(51)], abs=1e-12)
    assert got[5] == pytest.approx(1.0) and got[4] == pytest.approx(0.8)

    # ratio of cfg.total_steps when it is set
    cfg = _cfg(lr=1.0, warmup_ratio=0.2, total_steps=40)
    opt = build_optimizer(Tiny(), cfg)
    sched = build_scheduler(opt, cfg, total_steps=1000)
    got = [lrs[0] for lrs in _trace(opt, sched, 41)]
    assert got == pytest.approx([_cosine(s, 8, 40) for s in range(41)], abs=1e-12)

    # warmup_steps > 0 takes precedence over warmup_ratio
    cfg = _cfg(lr=1.0, warmup_steps=2, warmup_ratio=0.5, total_steps=10)
    opt = build_optimizer(Tiny(), cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    got = [lrs[0] for lrs in _trace(opt, sched, 11)]
    assert got == pytest.approx([_cosine(s, 2, 10) for s in range(11)], abs=1e-12)


def test_no_warmup_starts_at_full_lr():
    cfg = _cfg(lr=0.5, total_steps=10)
    opt = build_optimizer(Tiny(), cfg)
    sched = build_scheduler(opt, cfg, total_steps=10)
    got = [lrs[0] for lrs in _trace(opt, sched, 11)]
    assert got[0] == pytest.approx(0.5)
    assert got == pytest.approx([0.5 * 0.5 * (1 + math.cos(math.pi * s / 10)) for s in range(11)], abs=1e-12)
