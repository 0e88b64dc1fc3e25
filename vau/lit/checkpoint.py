"""Full-state checkpoints (resume), exports (weights for the next stage) and their loading.

Layout under ``<run.dir>``::

    checkpoints/step=000020.ckpt   full state: model, optimizer, scheduler, loops, data position
    checkpoints/last.ckpt          newest full state
    export/model.safetensors       trainable weights only (+ adapter/ for PEFT, config.yaml)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import load_file, save_file

from vau.io import atomic_dir, atomic_path

_STEP_RE = re.compile(r"step=(\d+)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temp file in the same folder, then renames it into place.

    A crash mid-write leaves the previous checkpoint untouched and no half-written file
    under a checkpoint's name.
    """

    def save_checkpoint(self, checkpoint: dict, path: Any, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: Optional[bool] = True) -> dict:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class VauCheckpoint(ModelCheckpoint):
    """Step checkpoints every N steps (newest K kept) + last, and always at the final step.

    Lightning's every-N logic misses the last step when N does not divide max_steps and
    a stop requested by a signal; both would make ``resume=auto`` lose work.
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int, keep: int, save_last: bool) -> None:
        super().__init__(
            dirpath=str(dirpath),
            filename="step={step:06d}",
            auto_insert_metric_name=False,
            monitor="step",
            mode="max",
            save_top_k=keep,
            save_last=save_last,
            every_n_train_steps=every_n_steps,
            enable_version_counter=False,
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # The decision is ours, not ModelCheckpoint's: with ``monitor="step"`` Lightning defers a
        # save that falls on an epoch's last batch to a validation that may never run, and a
        # stop requested by a signal or the final step would otherwise be missed.
        if self._last_global_step_saved == trainer.global_step or trainer.sanity_checking:
            return
        step = trainer.global_step
        periodic = self._every_n_train_steps > 0 and step % self._every_n_train_steps == 0
        final = 0 < trainer.max_steps <= step
        if periodic or final or trainer.should_stop:
            self.save_now(trainer)

    def save_now(self, trainer) -> None:
        """Writes the step checkpoint (newest ``keep`` kept) and ``last.ckpt`` of the current step."""
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_validation_end(self, trainer, pl_module) -> None:
        """Step checkpoints only: no save at validation end (see ``on_train_batch_end``)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Step checkpoints only: the epoch's last batch was saved at its batch end if due."""


def _complete(path: Path) -> bool:
    if path.is_file():
        return True
    # DeepSpeed checkpoints are folders; the "latest" tag file is written last.
    return path.is_dir() and (path / "latest").is_file()


def _step_of(path: Path) -> int:
    m = _STEP_RE.search(path.name)
    return int(m.group(1)) if m else -1


def find_resume_checkpoint(run_dir: str | Path, resume: Optional[str]) -> Optional[str]:
    """Resolves the ``resume`` setting to a checkpoint path.

    Args:
        run_dir: The run directory.
        resume: None (fresh run), ``"auto"`` (newest complete checkpoint in
            ``run_dir/checkpoints``, or None if there is none) or an explicit path.

    Returns:
        The checkpoint path, or None to start fresh.

    Raises:
        FileNotFoundError: if an explicit path does not exist.
    """
    if not resume:
        return None
    if resume != "auto":
        if not _complete(Path(resume)):
            raise FileNotFoundError(f"resume={resume}: no such (complete) checkpoint")
        return str(resume)
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    cands = [p for p in ckpt_dir.iterdir() if p.name.endswith(".ckpt") and not p.name.startswith(".") and _complete(p)]
    steps = [p for p in cands if _step_of(p) >= 0]
    newest = max(steps, key=_step_of) if steps else None
    last = ckpt_dir / "last.ckpt"
    if last in cands and (newest is None or last.stat().st_mtime >= newest.stat().st_mtime):
        return str(last)
    return str(newest) if newest else None


def write_export(target: str | Path, tensors: dict[str, torch.Tensor], config_yaml: str,
                 extra: Optional[Callable[[Path], None]] = None) -> Path:
    """Writes an export folder atomically: ``model.safetensors``, ``config.yaml`` (+ extras).

    Args:
        target: Export folder (``<run.dir>/export``).
        tensors: Trainable weights by parameter name.
        config_yaml: The resolved run config.
        extra: Writes more files into the folder (e.g. a PEFT adapter, tokenizer).
    """

    with atomic_dir(target) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, tmp / "model.safetensors")
        (tmp / "config.yaml").write_text(config_yaml)
        if extra is not None:
            extra(tmp)
    return Path(target)


def load_weights(model: torch.nn.Module, source: str | Path, strict: bool = False) -> list[str]:
    """Loads exported weights (``init_from``) into ``model``: weights only, no optimizer state.

    Args:
        model: Receiving model.
        source: An export folder (with ``model.safetensors``) or a ``.safetensors`` file.
        strict: Also require every parameter of ``model`` to be present.

    Returns:
        Names of the loaded tensors.

    Raises:
        FileNotFoundError: if there is no weights file.
        KeyError: listing unexpected, missing (strict) or shape-mismatched keys.
    """
    path = Path(source)
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"init_from={source}: no model.safetensors (expected an export folder: "
                                "train the run that writes it first, or set init_from=PATH)")
    weights = load_file(str(file))
    own = model.state_dict()
    unexpected = sorted(k for k in weights if k not in own)
    mismatched = sorted(f"{k}: {tuple(weights[k].shape)} vs {tuple(own[k].shape)}"
                        for k in weights if k in own and weights[k].shape != own[k].shape)
    missing = sorted(k for k in own if k not in weights) if strict else []
    problems = []
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append(f"shape mismatch {mismatched}")
    if missing:
        problems.append(f"missing keys {missing}")
    if problems:
        raise KeyError(f"init_from={source}: " + "; ".join(problems))
    model.load_state_dict(weights, strict=False)
    return sorted(weights)

