"""apply_trainable: fnmatch patterns decide which parameters train."""

from __future__ import annotations

import pytest
from torch import nn

from vau.models.trainable import apply_trainable


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
        self.connector = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)
        self.head.add_module("lora_A", nn.Linear(3, 1, bias=False))


def _trainable(model):
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)


def test_star_trains_everything():
    m = Net()
    m.requires_grad_(False)
    names = apply_trainable(m, ["*"])
    assert sorted(names) == sorted(n for n, _ in m.named_parameters())
    assert _trainable(m) == sorted(names)


def test_patterns_select_exactly_the_matches():
    m = Net()
    names = apply_trainable(m, ["connector.*", "*lora_*"])
    assert sorted(names) == ["connector.bias", "connector.weight", "head.lora_A.weight"]
    assert _trainable(m) == sorted(names)
    # everything else is frozen
    assert not m.encoder[0].weight.requires_grad and not m.head.weight.requires_grad
    # a second call re-decides from scratch (unfreezes and freezes)
    names = apply_trainable(m, ["encoder.1.*"])
    assert _trainable(m) == ["encoder.1.bias", "encoder.1.weight"] == sorted(names)


def test_patterns_are_case_sensitive_and_whole_name():
    m = Net()
    assert sorted(apply_trainable(m, ["head.weight"])) == ["head.weight"]
    with pytest.raises(ValueError):
        apply_trainable(m, ["HEAD.*"])
    with pytest.raises(ValueError):
        apply_trainable(m, ["head"])  # fnmatch on the full name, no implicit prefix


def test_pattern_matching_nothing_raises_and_changes_nothing():
    m = Net()
    apply_trainable(m, ["connector.*"])
    before = _trainable(m)
    with pytest.raises(ValueError) as ei:
        apply_trainable(m, ["head.*", "conector.*"])
    msg = str(ei.value)
    assert "conector.*" in msg
    assert "head.*" not in msg
    assert _trainable(m) == before  # no partial application
