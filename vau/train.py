"""`vau train`: compose -> run dir -> module + data -> Trainer.fit -> export."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from vau.config import conf_dir, config_diff, save_config, saved_yaml, to_container
from vau.families import get_family
from vau.errors import ConfigError, ExistsError, RunDirError
from vau.io import remove_stale_temps
from vau.lit.checkpoint import (
    check_resume_fits,
    export_weights_file,
    find_resume_checkpoint,
    finished_state,
    load_weights,
)
from vau.lit.loggers import build_loggers, close_loggers
from vau.lit.module import VauModule
from vau.lit.preemption import requeue_slurm_job, stop_of
from vau.lit.trainer import build_trainer
from vau.signals import STOP, RunStopped

log = logging.getLogger(__name__)


@rank_zero_only
def _write_run_config(cfg: Any, run_dir: Path) -> None:
    path = run_dir / "config.yaml"
    if path.is_file() and path.read_text() != saved_yaml(cfg):
        # Keep the config of earlier segments of this run (resumes with other overrides).
        n = len(list(run_dir.glob("config.prev-*.yaml")))
        path.rename(run_dir / f"config.prev-{n}.yaml")
    save_config(cfg, path)


#: Keys a resumed run cannot change: the checkpoint's model, optimizer state or data stream
#: would be silently reinterpreted (tensor shapes are checked separately, by check_resume_fits).
FIXED_ON_RESUME = ("model.family", "model.trainable", "data.pipeline", "optim.kind")
#: Keys that differ between a run's config.yaml and its resume without meaning a change.
_NOT_COMPARED = ("run.dir", "resume")


def _resume_diff(cfg: Any, run_dir: Path) -> None:
    """Prints how ``cfg`` differs from the run's config.yaml; refuses keys in FIXED_ON_RESUME.

    Raises:
        ConfigError: one line naming the fixed keys that differ (nothing written yet).
    """
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    diff = [d for d in config_diff(yaml.safe_load(path.read_text()) or {}, to_container(cfg))
            if d[0] not in _NOT_COMPARED]
    fixed = [f"{k}: {a!r} -> {b!r}" for k, a, b in diff if k.startswith(FIXED_ON_RESUME)]
    if fixed:
        raise ConfigError(f"resume: {'; '.join(fixed)} differ from {path}; a resumed run keeps them "
                          "(start a new run with another run.name, init_from=<this run>/export to reuse its weights)")
    if diff and rank_zero_only.rank == 0:
        log.warning("vau: resuming with %d key(s) changed from %s:\n%s", len(diff), path,
                    "\n".join(f"  {k}: {a!r} -> {b!r}" for k, a, b in diff))


def _finished(cfg: Any, state: dict) -> bool:
    """The finished run ``state`` already reached the end ``cfg`` asks for."""
    if cfg.trainer.max_steps is not None and cfg.trainer.max_steps > 0:
        return state["global_step"] >= cfg.trainer.max_steps
    return cfg.trainer.max_epochs is not None and state["epoch"] >= cfg.trainer.max_epochs


def train(cfg: Any, conf_root: Optional[Path] = None, callbacks: tuple = ()) -> Path:
    """Trains one run described by a resolved config.

    Args:
        cfg: Resolved config from :func:`vau.config.compose`.
        conf_root: conf/ directory (for DeepSpeed JSON); found automatically when omitted.
        callbacks: Extra Lightning callbacks.

    Returns:
        The run directory.

    Raises:
        RunStopped: the run was stopped by USR1/TERM (checkpointed, no export, requeued on USR1
            under SLURM); it is not finished.
    """
    owned = STOP.install()  # `vau train` installs it before its imports, so start-up is covered
    try:
        return _train(cfg, conf_root, callbacks)
    finally:
        STOP.consume()  # a later run in this process (a local sweep) starts clean
        if owned:
            STOP.restore()


def _train(cfg: Any, conf_root: Optional[Path], callbacks: tuple) -> Path:
    run_dir = Path(cfg.run.dir)
    ckpt_path = find_resume_checkpoint(run_dir, cfg.resume)
    if ckpt_path is None and find_resume_checkpoint(run_dir, "auto") is not None:
        # A fresh start here would mix its checkpoints and metrics with an earlier run's.
        raise ExistsError(
            f"run.dir={run_dir} already holds checkpoints: pass resume=auto to continue it, "
            "or choose another run.name / run.dir"
        )
    if ckpt_path is not None:
        _resume_diff(cfg, run_dir)
        done = finished_state(run_dir)
        if done is not None and _finished(cfg, done):
            rank_zero_info(f"vau: {run_dir} finished at step {done['global_step']} (its export/ is written); "
                           "nothing to train: raise trainer.max_steps (or max_epochs) to train on, or set another "
                           "run.name for a new run")
            return run_dir
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)

    # Everything that can be refused is checked before the run dir is touched.
    if cfg.init_from:
        export_weights_file(cfg.init_from)  # the previous stage's export, named first
    family = get_family(cfg.model.family)
    datamodule = family.build_datamodule(cfg)
    datamodule.check()  # data.root and shard specs, before the (possibly 7B) model is built
    module = VauModule(cfg, family.build_task(cfg))
    if ckpt_path is not None:
        check_resume_fits(module, ckpt_path)
    _prepare_run_dir(run_dir)
    _write_run_config(cfg, run_dir)
    if ckpt_path is not None:
        _retire_export(run_dir)

    if cfg.init_from:
        # Also on resume: a lean checkpoint has no frozen tensors, and those the previous stage
        # trained (now frozen) come from its export; the checkpoint then restores the rest.
        loaded = load_weights(module.model, cfg.init_from)
        rank_zero_info(f"vau: initialised {len(loaded)} tensors from {cfg.init_from}")
    if ckpt_path is not None:
        rank_zero_info(f"vau: resuming from {ckpt_path}")

    loggers = build_loggers(cfg, run_dir)
    trainer = build_trainer(cfg, run_dir, conf_root or conf_dir(), loggers, callbacks)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=ckpt_path is not None or None)
    finally:
        close_loggers(loggers)
    stopped = stop_of(trainer)
    if stopped is not None:
        if stopped.requeue and trainer.is_global_zero:
            requeue_slurm_job()  # after the checkpoint and the logger flush: the restart resumes from it
        raise RunStopped(stopped.received, stopped.stopped_at, stopped.requeue)
    if STOP.received is not None:
        log.warning("vau: %s received after the last step: the run is finished (export written)",
                    signal.Signals(STOP.received).name)
    return run_dir


@rank_zero_only
def _retire_export(run_dir: Path) -> None:
    """Moves the export of an earlier finish aside (``export.step-<N>``) when training goes on:
    until this run reaches its new end, nothing may take it for finished."""
    state = finished_state(run_dir)
    if state is not None:
        target = run_dir / f"export.step-{state['global_step']:06d}"
        if not target.exists():
            (run_dir / "export").rename(target)
            log.info("vau: training on past step %d; its export moved to %s", state["global_step"], target)


def _prepare_run_dir(run_dir: Path) -> None:
    """Creates the run dir (one-line error if it cannot be written) and removes a killed write's temp files."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"run.dir={run_dir}: cannot create it ({e.strerror or e})") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise RunDirError(f"run.dir={run_dir}: not writable (read-only file system or permissions)")
    if rank_zero_only.rank == 0:
        for path in remove_stale_temps([run_dir, run_dir / "checkpoints"]):
            log.info("vau: removed %s, left by an interrupted write", path)
