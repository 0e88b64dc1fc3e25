"""Full-state checkpoints (resume), exports (weights for the next stage) and their loading.

Layout under ``<run.dir>``::

    checkpoints/step=000020.ckpt   full state: model, optimizer, scheduler, loops, data position
    checkpoints/last.ckpt          newest full state
    export/model.safetensors       trainable weights only (+ adapter/ for PEFT, config.yaml)
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors.torch import load_file, save_file

from vau.errors import NotFoundError, RunDirError, UnknownNameError, user_os_error
from vau.io import atomic_dir, atomic_path

log = logging.getLogger("vau")

_STEP_RE = re.compile(r"step=(\d+)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temp file in the same folder, then renames it into place.

    A crash mid-write leaves the previous checkpoint untouched and no half-written file
    under a checkpoint's name.
    """

    def save_checkpoint(self, checkpoint: dict, path: Any, storage_options: Any = None) -> None:
        try:
            # A file object, not a path: torch then keeps the OSError of a full disk as context.
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                torch.save(checkpoint, f)
        except Exception as e:
            err = user_os_error(e)
            if err is None:
                raise
            raise RunDirError(f"cannot write checkpoint {path}: {err.strerror or err} "
                              "(the previous checkpoints are intact)") from e

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
            save_last="link" if save_last else False,  # a relative symlink to the newest step file
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
        # Lightning logs this batch's metrics row only after the batch-end hooks: the row rides
        # in the checkpoint (restored by ``on_train_start``), and every earlier row is flushed
        # first, so a SIGKILL right after the save loses no row.
        self._tail = pending_step_rows(trainer)
        for lg in trainer.loggers:
            lg.save()
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "metrics_tail": getattr(self, "_tail", [])}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_tail = list(state_dict.get("metrics_tail", []))
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "metrics_tail"})

    def on_train_start(self, trainer, pl_module) -> None:
        """metrics.csv continues at the resumed step: later rows (of the lost segment) go, the checkpoint's row returns."""
        for lg in trainer.loggers:
            restart = getattr(lg, "restart_at", None)
            if callable(restart):
                restart(trainer.global_step, getattr(self, "_resume_tail", []))

    def on_validation_end(self, trainer, pl_module) -> None:
        """Step checkpoints only: no save at validation end (see ``on_train_batch_end``)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Step checkpoints only: the epoch's last batch was saved at its batch end if due."""


def pending_step_rows(trainer) -> list[dict[str, Any]]:
    """The step row Lightning will log once this batch's end hooks return (none if not a logging step)."""
    lc = trainer._logger_connector
    if lc._first_loop_iter is None or not (lc.should_update_logs or trainer.fast_dev_run):
        return []
    metrics = convert_tensors_to_scalars(lc.metrics["log"])
    if not metrics:
        return []
    # As LoggerConnector.log_metrics numbers it: an explicit "step" metric, else batches stepped.
    step = metrics.pop("step", None)
    if step is None:
        metrics.setdefault("epoch", trainer.current_epoch)
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
    return [{**metrics, "step": int(step)}]


def _complete(path: Path) -> bool:
    if path.is_file():
        return True
    # DeepSpeed checkpoints are folders; the "latest" tag file is written last.
    return path.is_dir() and (path / "latest").is_file()


def _step_of(path: Path) -> int:
    m = _STEP_RE.search(path.name)
    return int(m.group(1)) if m else -1


def _unreadable(path: Path) -> Optional[str]:
    """Why a full-state checkpoint cannot be loaded (one line), or None if it can."""
    if path.is_dir():
        return None  # a DeepSpeed folder: complete once its "latest" tag exists (``_complete``)
    try:
        # mmap: only the zip index and the small pickled header are read, not the tensors.
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, bad pickle, I/O error: all mean unusable
        return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return None


def find_resume_checkpoint(run_dir: str | Path, resume: Optional[str]) -> Optional[str]:
    """Resolves the ``resume`` setting to a checkpoint path.

    Args:
        run_dir: The run directory.
        resume: None (fresh run), ``"auto"`` (newest readable checkpoint in
            ``run_dir/checkpoints``, or None if there is none) or an explicit path.

    Returns:
        The checkpoint path, or None to start fresh. With ``auto``, a newest checkpoint that
        cannot be read (a truncated ``last.ckpt``) is skipped with a warning for the newest
        intact one, so a requeued job does not fail the same way on every restart.

    Raises:
        FileNotFoundError: if an explicit path does not exist.
        RunDirError: if an explicit path cannot be read.
    """
    if not resume:
        return None
    if resume != "auto":
        path = Path(resume)
        if not _complete(path):
            raise NotFoundError(f"resume={resume}: no such (complete) checkpoint")
        why = _unreadable(path)
        if why is not None:
            raise RunDirError(f"resume={resume}: the checkpoint cannot be read ({why})")
        return str(resume)
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    cands = [p for p in ckpt_dir.iterdir() if p.name.endswith(".ckpt") and not p.name.startswith(".") and _complete(p)]
    # Newest first: step checkpoints by step, last.ckpt ahead of the newest step one it is not older than.
    order = sorted((p for p in cands if _step_of(p) >= 0), key=_step_of, reverse=True)
    last = ckpt_dir / "last.ckpt"
    if last in cands:
        order.insert(0 if not order or last.stat().st_mtime >= order[0].stat().st_mtime else 1, last)
    for path in order:
        why = _unreadable(path)
        if why is None:
            return str(path)
        log.warning("vau: resume=auto: skipping unreadable checkpoint %s (%s)", path, why)
    if order:
        raise RunDirError(f"resume=auto: no readable checkpoint in {ckpt_dir} ({len(order)} unreadable); "
                          "remove them to start fresh")
    return None


def check_resume_fits(module: torch.nn.Module, ckpt_path: str | Path) -> None:
    """Raises RunDirError (one line) if the checkpoint's weights do not fit ``module``.

    Called before anything in the run dir is written: a resume after a model change must fail
    with the keys that changed, not after renaming the old config away.
    """
    path = Path(ckpt_path)
    if path.is_dir():
        return  # DeepSpeed: the engine checks its own partitions when it loads them
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("state_dict", {})
    own = module.state_dict()
    # Frozen parameters are left out of lean checkpoints (ckpt.frozen=false): the model rebuilds them.
    frozen = set(getattr(module, "frozen_keys", lambda: [])())
    own_saved = {k: v for k, v in own.items() if k not in frozen}
    problems = []
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)]
    for what, keys in (("shape mismatch", shapes), ("unexpected", sorted(set(state) - set(own))),
                       ("missing", sorted(set(own_saved) - set(state)))):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            problems.append(f"{len(keys)} {what}: {', '.join(keys[:3])}{more}")
    if problems:
        raise RunDirError(f"resume: checkpoint {path} does not fit this model ({'; '.join(problems)}); "
                          "restore the model settings of the run's config.yaml or choose another run.dir")


#: File of an export naming where training ended (``{"global_step", "epoch"}``).
EXPORT_STATE = "state.json"


def write_export(target: str | Path, tensors: dict[str, torch.Tensor], config_yaml: str,
                 extra: Optional[Callable[[Path], None]] = None, state: Optional[dict] = None) -> Path:
    """Writes an export folder atomically: ``model.safetensors``, ``config.yaml`` (+ extras).

    Args:
        target: Export folder (``<run.dir>/export``).
        tensors: Trainable weights by parameter name.
        config_yaml: The resolved run config.
        extra: Writes more files into the folder (e.g. a PEFT adapter, tokenizer).
        state: Where training ended (``state.json``: global_step, epoch), when it was a fit.
    """
    import json

    with atomic_dir(target) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, tmp / "model.safetensors")
        (tmp / "config.yaml").write_text(config_yaml)
        if state is not None:
            (tmp / EXPORT_STATE).write_text(json.dumps(state) + "\n")
        if extra is not None:
            extra(tmp)
    return Path(target)


def finished_state(run_dir: str | Path) -> Optional[dict]:
    """``{"global_step", "epoch"}`` of the run's export when training reached its end, else None."""
    import json

    path = Path(run_dir) / "export" / EXPORT_STATE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def export_weights_file(source: str | Path) -> Path:
    """The ``model.safetensors`` of an export folder (or file) named by ``init_from``.

    Raises:
        FileNotFoundError: one line, if there is no weights file there.
    """
    path = Path(source)
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise NotFoundError(f"init_from={source}: no model.safetensors (expected an export folder: "
                                "train the run that writes it first, or set init_from=PATH)")
    return file


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
    weights = load_file(str(export_weights_file(source)))
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
        raise UnknownNameError(f"init_from={source}: " + "; ".join(problems))
    model.load_state_dict(weights, strict=False)
    return sorted(weights)

