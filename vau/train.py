"""`vau train`: compose -> run dir -> module + data -> Trainer.fit -> export."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from vau.config import conf_dir, save_config, to_yaml
from vau.families import FAMILIES
from vau.lit.checkpoint import find_resume_checkpoint, load_weights
from vau.lit.loggers import build_loggers, close_loggers
from vau.lit.preemption import PreemptionHandler, requeue_slurm_job
from vau.lit.trainer import build_trainer

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
    """
    run_dir = Path(cfg.run.dir)
    ckpt_path = find_resume_checkpoint(run_dir, cfg.resume)
    if ckpt_path is None and find_resume_checkpoint(run_dir, "auto") is not None:
        # A fresh start here would mix its checkpoints and metrics with an earlier run's.
        raise FileExistsError(
            f"run.dir={run_dir} already holds checkpoints: pass resume=auto to continue it, "
            "or choose another run.name / run.dir"
        )
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_run_config(cfg, run_dir)

    family = FAMILIES.get(cfg.model.family)
    module = family.build_module(cfg)
    datamodule = family.build_datamodule(cfg)
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
    preempted = next((c for c in trainer.callbacks if isinstance(c, PreemptionHandler)), None)
    if preempted is not None and preempted.requeue and trainer.is_global_zero:
        requeue_slurm_job()  # after the checkpoint and the logger flush: the restart resumes from it
    return run_dir
