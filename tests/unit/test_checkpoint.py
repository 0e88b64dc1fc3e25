"""Resume-checkpoint discovery, atomic checkpoint IO, exports and weight loading."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vau.errors import RunDirError
from vau.lit.checkpoint import AtomicCheckpointIO, check_resume_fits, find_resume_checkpoint, load_weights, write_export


def _touch(path: Path, mtime: float | None = None) -> Path:
    """A small, readable full-state checkpoint (resume=auto skips unreadable ones)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "global_step": 1}, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


# --------------------------------------------------------------------------- find_resume_checkpoint


def test_resume_none_means_fresh(tmp_path):
    _touch(tmp_path / "checkpoints" / "step=000010.ckpt")
    assert find_resume_checkpoint(tmp_path, None) is None
    assert find_resume_checkpoint(tmp_path, "") is None


def test_auto_without_checkpoints(tmp_path):
    assert find_resume_checkpoint(tmp_path, "auto") is None
    assert find_resume_checkpoint(tmp_path / "missing", "auto") is None
    (tmp_path / "checkpoints").mkdir()
    assert find_resume_checkpoint(tmp_path, "auto") is None


def test_auto_picks_highest_step_not_newest_file_or_name_order(tmp_path):
    ck = tmp_path / "checkpoints"
    _touch(ck / "step=000100.ckpt", mtime=1000)
    _touch(ck / "step=000020.ckpt", mtime=3000)  # newer file, lower step
    _touch(ck / "step=000900.ckpt", mtime=2000)
    _touch(ck / "step=1000.ckpt", mtime=500)  # no zero padding: numeric, not lexical, order
    assert find_resume_checkpoint(tmp_path, "auto") == str(ck / "step=1000.ckpt")


def test_last_ckpt_when_at_least_as_new(tmp_path):
    ck = tmp_path / "checkpoints"
    _touch(ck / "step=000020.ckpt", mtime=1000)
    _touch(ck / "step=000040.ckpt", mtime=2000)
    _touch(ck / "last.ckpt", mtime=2000)  # same age: last wins
    assert find_resume_checkpoint(tmp_path, "auto") == str(ck / "last.ckpt")
    os.utime(ck / "last.ckpt", (3000, 3000))
    assert find_resume_checkpoint(tmp_path, "auto") == str(ck / "last.ckpt")
    os.utime(ck / "last.ckpt", (1500, 1500))  # older than the newest step checkpoint
    assert find_resume_checkpoint(tmp_path, "auto") == str(ck / "step=000040.ckpt")


def test_truncated_newest_falls_back_to_newest_intact(tmp_path, caplog):
    ck = tmp_path / "checkpoints"
    _touch(ck / "step=000003.ckpt", mtime=1000)
    _touch(ck / "step=000006.ckpt", mtime=2000)
    last = _touch(ck / "last.ckpt", mtime=3000)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # killed mid-copy, or a full disk
    os.utime(last, (3000, 3000))
    assert find_resume_checkpoint(tmp_path, "auto") == str(ck / "step=000006.ckpt")
    assert "skipping unreadable checkpoint" in caplog.text and "last.ckpt" in caplog.text
    (ck / "step=000006.ckpt").write_bytes(b"PK\x03\x04garbage")
    assert find_resume_checkpoint(tmp_path, "auto") == str(ck / "step=000003.ckpt")
    (ck / "step=000003.ckpt").write_bytes(b"")
    with pytest.raises(RunDirError, match="no readable checkpoint"):
        find_resume_checkpoint(tmp_path, "auto")
    with pytest.raises(RunDirError, match="cannot be read"):
        find_resume_checkpoint(tmp_path, str(last))


def test_resume_into_a_changed_model_names_the_keys(tmp_path):
    ckpt = tmp_path / "c.ckpt"
    torch.save({"state_dict": nn.Linear(3, 4).state_dict()}, ckpt)
    check_resume_fits(nn.Linear(3, 4), ckpt)  # same shapes: no error
    wider = nn.Linear(3, 8, bias=False)
    wider.register_buffer("extra", torch.zeros(1))
    with pytest.raises(RunDirError) as e:
        check_resume_fits(wider, ckpt)
    msg = str(e.value)
    assert "\n" not in msg and "weight (4, 3) vs (8, 3)" in msg
    assert "1 unexpected: bias" in msg and "1 missing: extra" in msg


def test_last_ckpt_alone(tmp_path):
    _touch(tmp_path / "checkpoints" / "last.ckpt")
    assert find_resume_checkpoint(tmp_path, "auto") == str(tmp_path / "checkpoints" / "last.ckpt")


def test_auto_ignores_temp_and_incomplete(tmp_path):
    ck = tmp_path / "checkpoints"
    _touch(ck / "step=000010.ckpt", mtime=1000)
    _touch(ck / ".step=000050.ckpt", mtime=2000)  # dot file
    _touch(ck / ".step=000060.ckpt.abc123.tmp", mtime=2000)  # AtomicCheckpointIO temp file
    _touch(ck / ".last.ckpt.abc.tmp", mtime=2000)
    _touch(ck / "step=000070.ckpt.tmp", mtime=2000)  # not a .ckpt
    (ck / "step=000080.ckpt").mkdir()  # DeepSpeed folder without `latest`: incomplete
    _touch(ck / "step=000080.ckpt" / "mp_rank_00_model_states.pt")
    assert find_resume_checkpoint(tmp_path, "auto") == str(ck / "step=000010.ckpt")


def test_auto_accepts_complete_deepspeed_folder(tmp_path):
    ck = tmp_path / "checkpoints"
    _touch(ck / "step=000010.ckpt", mtime=1000)
    _touch(ck / "step=000030.ckpt" / "latest")
    assert find_resume_checkpoint(tmp_path, "auto") == str(ck / "step=000030.ckpt")
    # an explicit DeepSpeed folder is accepted only when complete
    assert find_resume_checkpoint(tmp_path, str(ck / "step=000030.ckpt")) == str(ck / "step=000030.ckpt")
    (ck / "step=000040.ckpt").mkdir()
    with pytest.raises(FileNotFoundError):
        find_resume_checkpoint(tmp_path, str(ck / "step=000040.ckpt"))


def test_explicit_path(tmp_path):
    p = _touch(tmp_path / "elsewhere" / "my.ckpt")
    assert find_resume_checkpoint(tmp_path, str(p)) == str(p)
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        find_resume_checkpoint(tmp_path, str(tmp_path / "nope.ckpt"))


# --------------------------------------------------------------------------- AtomicCheckpointIO


def _state(v: float) -> dict:
    return {
        "state_dict": {"w": torch.full((2, 3), v), "b": torch.arange(3)},
        "global_step": int(v),
        "loops": {"fit_loop": {"epoch": 1, "names": ["a", "b"]}},
    }


def test_atomic_io_round_trip(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "step=000001.ckpt"
    io.save_checkpoint(_state(1.0), path)
    assert os.listdir(path.parent) == [path.name]  # no temp file left
    got = io.load_checkpoint(path)
    assert torch.equal(got["state_dict"]["w"], torch.full((2, 3), 1.0))
    assert torch.equal(got["state_dict"]["b"], torch.arange(3))
    assert got["global_step"] == 1 and got["loops"] == {"fit_loop": {"epoch": 1, "names": ["a", "b"]}}
    # overwrite in place
    io.save_checkpoint(_state(2.0), path)
    assert io.load_checkpoint(path)["global_step"] == 2
    assert os.listdir(path.parent) == [path.name]


class _Custom:
    pass


def test_atomic_io_loads_weights_only(tmp_path):
    path = tmp_path / "x.ckpt"
    torch.save({"obj": _Custom()}, path)
    with pytest.raises(pickle.UnpicklingError):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)


def test_atomic_io_failed_save_keeps_previous(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint(_state(1.0), path)
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")  # partial write, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint(_state(2.0), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert io.load_checkpoint(path)["global_step"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]  # the temp file is cleaned up

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        io.save_checkpoint(_state(3.0), tmp_path / "new.ckpt")
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no half-written new checkpoint either


# --------------------------------------------------------------------------- exports


def test_write_export_and_replace(tmp_path):
    target = tmp_path / "run" / "export"
    tensors = {"a.weight": torch.randn(3, 2), "a.bias": torch.zeros(3)}
    out = write_export(target, tensors, "run:\n  name: x\n")
    assert out == target
    assert sorted(os.listdir(target)) == ["config.yaml", "model.safetensors"]
    loaded = load_file(str(target / "model.safetensors"))
    assert set(loaded) == set(tensors)
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert (target / "config.yaml").read_text() == "run:\n  name: x\n"

    # replacing an existing export
    new = {"b.weight": torch.ones(2, 2)}
    write_export(target, new, "run:\n  name: y\n", extra=lambda d: (d / "adapter").mkdir())
    assert sorted(os.listdir(target)) == ["adapter", "config.yaml", "model.safetensors"]
    loaded = load_file(str(target / "model.safetensors"))
    assert list(loaded) == ["b.weight"] and torch.equal(loaded["b.weight"], torch.ones(2, 2))
    assert (target / "config.yaml").read_text() == "run:\n  name: y\n"
    assert os.listdir(target.parent) == ["export"]  # no temp or .old folders left


def test_write_export_failure_keeps_previous(tmp_path):
    target = tmp_path / "export"
    write_export(target, {"w": torch.ones(2)}, "v: 1\n")

    def boom(d):
        raise RuntimeError("extra failed")

    with pytest.raises(RuntimeError, match="extra failed"):
        write_export(target, {"w": torch.zeros(2)}, "v: 2\n", extra=boom)
    assert torch.equal(load_file(str(target / "model.safetensors"))["w"], torch.ones(2))
    assert (target / "config.yaml").read_text() == "v: 1\n"
    assert os.listdir(tmp_path) == ["export"]


def test_write_export_non_contiguous_tensor(tmp_path):
    t = torch.arange(6.0).reshape(2, 3).t()
    assert not t.is_contiguous()
    write_export(tmp_path / "e", {"t": t}, "")
    assert torch.equal(load_file(str(tmp_path / "e" / "model.safetensors"))["t"], t)


# --------------------------------------------------------------------------- load_weights


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.head = nn.Linear(2, 1)


def test_load_weights_from_export_folder_and_file(tmp_path):
    src, dst = Small(), Small()
    write_export(tmp_path / "export", dict(src.state_dict()), "")
    names = load_weights(dst, tmp_path / "export")
    assert names == sorted(src.state_dict())
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)

    # a .safetensors file works too, and a partial file loads only its keys (strict=False)
    save_file({"head.bias": torch.tensor([7.0])}, str(tmp_path / "part.safetensors"))
    dst2 = Small()
    lin_before = dst2.lin.weight.detach().clone()
    assert load_weights(dst2, tmp_path / "part.safetensors") == ["head.bias"]
    assert dst2.head.bias.item() == 7.0
    assert torch.equal(dst2.lin.weight, lin_before)


def test_load_weights_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_weights(Small(), tmp_path)
    with pytest.raises(FileNotFoundError):
        load_weights(Small(), tmp_path / "nope.safetensors")


def test_load_weights_unexpected_and_mismatched(tmp_path):
    sd = dict(Small().state_dict())
    sd["extra.weight"] = torch.zeros(1)
    sd["lin.weight"] = torch.zeros(4, 3)
    save_file(sd, str(tmp_path / "w.safetensors"))
    model = Small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(KeyError) as ei:
        load_weights(model, tmp_path / "w.safetensors")
    msg = ei.value.args[0]
    assert "unexpected keys" in msg and "extra.weight" in msg
    assert "shape mismatch" in msg and "lin.weight" in msg and "(4, 3)" in msg and "(2, 3)" in msg
    assert "missing" not in msg
    for k, v in model.state_dict().items():  # nothing was loaded
        assert torch.equal(v, before[k])


def test_load_weights_strict_lists_missing(tmp_path):
    save_file({"lin.weight": torch.zeros(2, 3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(KeyError) as ei:
        load_weights(Small(), tmp_path / "w.safetensors", strict=True)
    msg = ei.value.args[0]
    assert "missing keys" in msg
    for k in ("head.bias", "head.weight", "lin.bias"):
        assert k in msg
    assert "'lin.weight'" not in msg
    model = Small()
    assert load_weights(model, tmp_path / "w.safetensors") == ["lin.weight"]
    assert torch.count_nonzero(model.lin.weight) == 0
