"""Parameter groups (lr_mult, decay, frozen) and the warmup schedules."""

from __future__ import annotations

import math
from fnmatch import fnmatchcase

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from vau.config.schema import OptimConfig
from vau.errors import ConfigError
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


class TinyLora(Tiny):
    def __init__(self) -> None:
        super().__init__()
        self.connector.add_module("lora_A", nn.Linear(3, 1, bias=False))
        self.llm.add_module("lora_B", nn.Linear(1, 2, bias=False))


def _expected_lr(model, lr, mults, pick):
    """Independent reference: ``pick`` chooses among the keys that fnmatch (or prefix-match) a name."""
    out = {}
    for name, _ in model.named_parameters():
        hits = [k for k in mults if (fnmatchcase(name, k) if any(c in k for c in "*?[")
                                     else name == k or name.startswith(k + "."))]
        out[name] = lr * (mults[pick(hits)] if hits else 1.0)
    return out


@pytest.mark.parametrize("pattern", ["*.lora_*", "vision_tower.*.weight", "*.bias", "vision_tower.?.*", "llm.[wl]*"])
def test_glob_key_scales_exactly_matching_params(pattern):
    model = TinyLora()
    groups = param_groups(model.named_parameters(), _cfg(lr=0.1, weight_decay=0.0, lr_mult={pattern: 0.3}))
    want = sorted(n for n, _ in model.named_parameters() if fnmatchcase(n, pattern))
    assert want  # the pattern is meaningful on this model
    assert {g["name"] for g in groups} == {pattern, "default"}
    g = next(g for g in groups if g["name"] == pattern)
    assert _names_in(model, g) == want
    assert g["lr"] == pytest.approx(0.03)
    rest = next(g for g in groups if g["name"] == "default")
    assert _names_in(model, rest) == sorted(n for n, _ in model.named_parameters() if n not in want)
    assert rest["lr"] == pytest.approx(0.1)


def test_glob_key_with_weight_decay_splits_like_a_prefix():
    model = TinyLora()
    groups = param_groups(model.named_parameters(), _cfg(lr=1.0, weight_decay=0.1, lr_mult={"vision_tower.*": 0.5}))
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"vision_tower.*", "vision_tower.*_no_decay", "default", "default_no_decay"}
    assert _names_in(model, by_name["vision_tower.*"]) == ["vision_tower.0.weight", "vision_tower.head.weight"]
    assert by_name["vision_tower.*_no_decay"]["lr"] == pytest.approx(0.5)
    assert by_name["vision_tower.*_no_decay"]["weight_decay"] == 0.0


def test_prefix_and_pattern_together():
    model = TinyLora()
    mults = {"llm": 3.0, "*.lora_*": 0.1}
    owner = _by_param(param_groups(model.named_parameters(), _cfg(lr=1.0, lr_mult=mults)))
    want = _expected_lr(model, 1.0, mults, lambda hits: max(hits, key=len))
    for name, p in model.named_parameters():
        assert owner[id(p)]["lr"] == pytest.approx(want[name]), name
    # the prefix keeps its dotted meaning: "llm" takes llm.weight/llm.bias but the longer
    # "*.lora_*" takes llm.lora_B.weight; "vision" stays a prefix of "vision." only
    assert owner[id(model.llm.weight)]["lr"] == pytest.approx(3.0)
    assert owner[id(model.llm.lora_B.weight)]["lr"] == pytest.approx(0.1)
    assert owner[id(model.connector.lora_A.weight)]["lr"] == pytest.approx(0.1)
    assert owner[id(model.connector.weight)]["lr"] == pytest.approx(1.0)


@pytest.mark.parametrize("mults,checks", [
    # the longer pattern overrides the shorter prefix ...
    ({"vision_tower": 0.2, "vision_tower.*.weight": 0.5},
     {"vision_tower.0.weight": 0.5, "vision_tower.head.weight": 0.5, "vision_tower.0.bias": 0.2,
      "vision_tower.head.bias": 0.2, "vision.weight": 1.0}),
    # ... and the longer prefix overrides the shorter pattern, whatever the order in the dict
    ({"vision_tower.head": 0.5, "*.bias": 0.1},
     {"vision_tower.head.bias": 0.5, "vision_tower.head.weight": 0.5, "vision_tower.0.bias": 0.1,
      "llm.bias": 0.1, "llm.weight": 1.0}),
    ({"*.bias": 0.1, "vision_tower.head": 0.5},
     {"vision_tower.head.bias": 0.5, "vision_tower.0.bias": 0.1}),
    # equally long keys: the one listed first wins
    ({"llm.*": 2.0, "*bias": 3.0}, {"llm.bias": 2.0, "llm.weight": 2.0, "connector.bias": 3.0}),
    ({"*bias": 3.0, "llm.*": 2.0}, {"llm.bias": 3.0, "llm.weight": 2.0, "connector.bias": 3.0}),
])
def test_longest_key_wins_between_prefix_and_pattern(mults, checks):
    model = TinyLora()
    owner = _by_param(param_groups(model.named_parameters(), _cfg(lr=1.0, lr_mult=mults)))
    params = dict(model.named_parameters())
    for name, lr in checks.items():
        assert owner[id(params[name])]["lr"] == pytest.approx(lr), name
    # and every parameter agrees with the reference rule: longest key, first listed on ties
    want = _expected_lr(model, 1.0, mults, lambda hits: max(hits, key=len))
    for name, p in params.items():
        assert owner[id(p)]["lr"] == pytest.approx(want[name]), name


def test_unmatched_pattern_raises_like_a_prefix():
    model = Tiny()
    with pytest.raises(ConfigError) as ei:
        param_groups(model.named_parameters(), _cfg(lr=1.0, lr_mult={"*.lora_*": 0.1, "llm": 1.0}))
    assert "*.lora_*" in str(ei.value) and "'llm'" not in str(ei.value)
    # a pattern whose matches are all frozen matches no trainable parameter
    for p in model.vision_tower.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match=r"vision_tower\.\*"):
        param_groups(model.named_parameters(), _cfg(lr=1.0, lr_mult={"vision_tower.*": 0.2}))
    # a glob character makes the key a pattern, not a prefix: "llm*" is not "llm" + "."
    groups = param_groups(model.named_parameters(), _cfg(lr=1.0, lr_mult={"llm*": 0.5}))
    assert _names_in(model, next(g for g in groups if g["name"] == "llm*")) == ["llm.bias", "llm.weight"]
    with pytest.raises(ConfigError, match="llm"):
        param_groups(model.named_parameters(), _cfg(lr=1.0, lr_mult={"llm?": 0.5}))


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
    opt = build_optimizer(model, _cfg(kind="adamw", lr=0.1, weight_decay=0.01, betas=[0.8, 0.9], eps=1e-6,
                                      lr_mult={"connector": 0.5}))
    assert isinstance(opt, torch.optim.AdamW)
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["connector"] == pytest.approx(0.05) and lrs["default"] == pytest.approx(0.1)
    assert all(g["betas"] == (0.8, 0.9) and g["eps"] == 1e-6 for g in opt.param_groups)
    sgd = build_optimizer(model, _cfg(kind="sgd", lr=0.1, betas=[0.7, 0.9]))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.7


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(KeyError) as ei:
        build_optimizer(Tiny(), _cfg(kind="adamx"))
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
