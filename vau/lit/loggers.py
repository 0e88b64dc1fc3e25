"""Loggers: metrics.csv in the run dir (always) and wandb (offline by default)."""

from __future__ import annotations

import csv
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.wandb import _add_prefix
from lightning.pytorch.utilities import rank_zero_only

from vau.config import to_container
from vau.io import atomic_path, atomic_write_text
from vau.lit.wandb_files import last_logged_step


class _ResumableWriter(ExperimentWriter):
    """Appends to an existing metrics.csv instead of deleting it (Lightning's default).

    A (re)started run calls :meth:`restart_at` with the step it starts from: rows at or past
    it were logged by the interrupted run after its last checkpoint and are re-done now, and
    the checkpoint's own step row (logged after the save) is put back if the kill lost it.
    Without that call, the first save drops rows at or past the first new step.
    """

    def __init__(self, log_dir: str) -> None:
        self.metrics: list[dict[str, float]] = []
        self.metrics_keys: list[str] = []
        self.hparams: dict = {}
        self._fs = None
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        os.makedirs(log_dir, exist_ok=True)
        self._rows: list[dict] | None = None
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                reader = csv.DictReader(f)
                self.metrics_keys = list(reader.fieldnames or [])
                self._rows = list(reader)

    def restart_at(self, step: int, tail: list[dict]) -> None:
        """Keeps rows before ``step``, adds the ``tail`` rows missing from them, rewrites the file."""
        rows = self._rows if self._rows is not None else []
        kept = [r for r in rows if r.get("step") in (None, "") or int(float(r["step"])) < step]

        def present(t: dict) -> bool:
            keys = [k for k in t if k not in ("step", "epoch")]
            return any(r.get("step") not in (None, "") and int(float(r["step"])) == t["step"]
                       and all(r.get(k) not in (None, "") for k in keys) for r in kept)

        missing = [t for t in tail if not present(t)]
        self._rows = None
        self.metrics_keys = sorted(set(self.metrics_keys).union(*missing)) if missing else self.metrics_keys
        if kept or missing or os.path.isfile(self.metrics_file_path):
            self._rewrite(kept + missing)

    def log_hparams(self, params: dict[str, Any]) -> None:
        self.hparams.update(params)  # the run's config.yaml already records them

    def save(self) -> None:
        if not self.metrics:
            return
        new_keys = set().union(*self.metrics) - set(self.metrics_keys)
        if self._rows is not None:
            first_new = min(int(m["step"]) for m in self.metrics)
            kept = [r for r in self._rows if r.get("step") in (None, "") or int(float(r["step"])) < first_new]
            self._rows = None
            self.metrics_keys = sorted(set(self.metrics_keys) | new_keys)
            self._rewrite(kept + self.metrics)
        elif new_keys or not os.path.isfile(self.metrics_file_path):
            old = []
            if os.path.isfile(self.metrics_file_path):
                with open(self.metrics_file_path, newline="") as f:
                    old = list(csv.DictReader(f))
            self.metrics_keys = sorted(set(self.metrics_keys) | new_keys)
            self._rewrite(old + self.metrics)
        else:
            with open(self.metrics_file_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.metrics_keys).writerows(self.metrics)
        self.metrics = []

    def _rewrite(self, rows: list[dict]) -> None:
        # Temp file + rename: a crash mid-rewrite never leaves a truncated metrics.csv.
        with atomic_path(self.metrics_file_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


class RunCSVLogger(CSVLogger):
    """CSVLogger writing ``<run.dir>/metrics.csv`` (``step`` + one column per key), resumable."""

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")

    @property
    def log_dir(self) -> str:
        return str(self.save_dir)

    @rank_zero_only
    def restart_at(self, step: int, tail: list[dict]) -> None:
        """See :meth:`_ResumableWriter.restart_at` (called by VauCheckpoint at train start)."""
        self.experiment.restart_at(step, tail)

    @property
    @rank_zero_only
    def experiment(self) -> _ResumableWriter:
        if self._experiment is None:
            self._experiment = _ResumableWriter(self.log_dir)
        return self._experiment


#: wandb's own older spellings of its modes in $WANDB_MODE.
_WANDB_ENV_MODES = {"dryrun": "offline", "run": "online"}


def wandb_mode(cfg: Any) -> str:
    """An explicit $WANDB_MODE (the site's or the job's), else the config's mode, else offline.

    The environment wins so that an air-gapped compute node (``WANDB_MODE=offline`` in the
    site file) never tries to reach a server whatever the experiment says.
    """
    from vau.config.schema import wandb_mode_of

    env = os.environ.get("WANDB_MODE", "").strip()
    if not env:
        os.environ.pop("WANDB_MODE", None)  # an empty WANDB_MODE= is unset to us; wandb itself would refuse it
    if env:
        return wandb_mode_of(_WANDB_ENV_MODES.get(env, env), "$WANDB_MODE")
    return wandb_mode_of(cfg.logger.wandb.mode or "offline", "logger.wandb.mode")


def check_wandb_login(mode: str) -> None:
    """Online logging needs an API key: ``$WANDB_API_KEY`` or the ``~/.netrc`` entry `wandb login` writes.

    Raises:
        ConfigError: one line saying how to log in or go offline.
    """
    import netrc
    from urllib.parse import urlparse

    from vau.errors import ConfigError

    if mode != "online" or os.environ.get("WANDB_API_KEY"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        found = netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        found = False
    if not found:
        raise ConfigError(f"logger.wandb.mode=online: no wandb API key for {host} (set WANDB_API_KEY or run "
                          "`wandb login`), or log offline with logger=offline / WANDB_MODE=offline and "
                          "`wandb sync` later")


class StepWandbLogger(WandbLogger):
    """A WandbLogger whose wandb step (``_step``) is the trainer's global step.

    Lightning's logs with wandb's own counter, which restarts in every offline segment of a
    resumed run (segment 2's ``_step`` 0.. overwrites segment 1's on ``wandb sync``). With the
    global step, the segments' steps follow on; rows at or below ``skip_through`` (what an
    earlier segment already logged, re-done after a resume from an older checkpoint) are
    dropped, so no step is logged twice.
    """

    def __init__(self, *args: Any, skip_through: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)  # wandb 0.31 warns that the setting does nothing
        self.skip_through = -1 if skip_through is None else skip_through

    @rank_zero_only
    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        if step is None:
            return super().log_metrics(metrics, step)
        if step <= self.skip_through:
            return None
        metrics = _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        self.experiment.log({**metrics, "trainer/global_step": step}, step=step)


def wandb_run_id(run_dir: Path) -> str:
    """The run's wandb id, created once and kept in ``<run.dir>/wandb/run_id``.

    A resumed run (same run dir) continues the same wandb run.
    """
    path = run_dir / "wandb" / "run_id"
    if path.is_file():
        return path.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    if rank_zero_only.rank == 0:
        atomic_write_text(path, run_id)
    return run_id


def build_loggers(cfg: Any, run_dir: Path) -> list:
    """metrics.csv logger plus, unless disabled, a WandbLogger tied to the run's id."""
    loggers: list = [RunCSVLogger(run_dir)]
    mode = wandb_mode(cfg)
    if mode != "disabled":
        check_wandb_login(mode)
        w = cfg.logger.wandb
        run_id = wandb_run_id(run_dir)
        logger = StepWandbLogger(
            name=w.name or cfg.run.name,
            project=w.project,
            entity=w.entity,
            group=w.group,
            tags=list(w.tags),
            save_dir=str(run_dir),
            id=run_id,
            resume="allow",
            mode=mode,  # passed to wandb.init; Lightning's offline=True would set $WANDB_MODE for the process
            skip_through=last_logged_step(run_dir / "wandb", run_id) if mode == "offline" else None,
        )
        logger.log_hyperparams(to_container(cfg))
        loggers.append(logger)
        if rank_zero_only.rank == 0:
            where = (f"offline in {run_dir / 'wandb'} (upload: wandb sync --id {run_id} -p {w.project} "
                     f"{run_dir / 'wandb'}/offline-run-*)" if mode == "offline" else f"online, project {w.project}")
            logging.getLogger("vau.train").info("vau: wandb run %s %s", run_id, where)
    return loggers


def close_loggers(loggers: list) -> None:
    """Finishes the wandb run so a later run in the same process starts its own."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and rank_zero_only.rank == 0 and logger._experiment is not None:
            logger.experiment.finish()
