"""`vau train`: compose -> run dir -> module + data -> Trainer.fit -> export."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from vau.config import conf_dir, save_config, to_yaml
from vau.families import get_family
from vau.errors import ExistsError, RunDirError
from vau.io import remove_stale_temps
from vau.lit.checkpoint import check_resume_fits, export_weights_file, find_resume_checkpoint, load_weights
from vau.lit.loggers import build_loggers, close_loggers
from vau.lit.module import VauModule
from vau.lit.preemption import requeue_slurm_job, stop_of
from vau.lit.trainer import build_trainer
from vau.signals import STOP, RunStopped

log = logging.getLogger(__name__)


@rank_zero_only
def _write_run_config(cfg: Any, run_dir: Path) -> None:
    path = run_dir / "config.yaml"
    if path.is_file() and path.read_text() != to_yaml(cfg):
        # Keep the config of earlier segments of this run (resumes with other overrides).
        n = len(list(run_dir.glob("config.prev-*.yaml")))
        path.rename(run_dir / f"config.prev-{n}.yaml")
    save_config(cfg, path)


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
        rank_zero_info(f"vau: resuming from {ckpt_path}")
    elif cfg.init_from:
        loaded = load_weights(module.model, cfg.init_from)
        rank_zero_info(f"vau: initialised {len(loaded)} tensors from {cfg.init_from}")

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
