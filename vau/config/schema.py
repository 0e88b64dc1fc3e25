"""Typed schema of a vau run: the sections every model family shares.

Families extend :class:`ModelConfig` and :class:`DataConfig` with their own fields and
declare a :class:`RunConfig` subclass (see ``vau.families``); shared model blocks bring their
settings from ``vau.models.settings``. Each field carries a one-line
docstring; OmegaConf validates types and, in struct mode, rejects unknown keys.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional

from omegaconf import OmegaConf

from vau.errors import ConfigError


@dataclass
class RunSection:
    """Identity and location of a run."""

    name: str = "default"
    """Run name: names the run directory and the wandb run."""
    dir: str = "${oc.env:VAU_RUNS,runs}/${run.name}"
    """Run directory: config.yaml, metrics.csv, checkpoints/, export/, wandb/ live here."""
    seed: int = 0
    """Global seed for model init, data order and dropout (seed_everything)."""
    experiment: Optional[str] = None
    """Experiment file this config was composed from (informational)."""


@dataclass
class ModelConfig:
    """Base model section; families subclass it."""

    family: str = "lm"
    """Model family: a key of the ``vau.families`` registry, or the module path of one outside it."""
    trainable: List[str] = field(default_factory=lambda: ["*"])
    """fnmatch patterns of parameter names to train; all others are frozen."""


DATA_ROOT_ENV, DATA_ROOT = "VAU_DATA", "data"
"""The default ``data.root``: ``$VAU_DATA``, else ``data`` (relative to the working directory)."""


def default_data_root() -> str:
    """The ``data.root`` a config gets when nothing sets it (what the schema field resolves to)."""
    return os.environ.get(DATA_ROOT_ENV, DATA_ROOT)


@dataclass
class DataConfig:
    """Base data section; families subclass it."""

    pipeline: Optional[str] = None
    """The family's data pipeline (a key of its ``Family.data``); null = its default."""
    root: str = f"${{oc.env:{DATA_ROOT_ENV},{DATA_ROOT}}}"
    """Root folder of the data (shards, synthetic data)."""
    batch_size: int = 2
    """Samples per device per micro-batch."""
    val_batch_size: Optional[int] = None
    """Validation batch size; null = batch_size."""
    num_workers: int = 0
    """DataLoader worker processes per device."""
    shuffle: bool = True
    """Shuffle training samples (seeded by run.seed + epoch)."""


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    kind: str = "adamw"
    """Optimizer: a key of ``vau.lit.optim.OPTIMIZERS`` (was ``optim.name``)."""
    lr: float = 1e-4
    """Base learning rate (the LLM's, for multimodal families)."""
    weight_decay: float = 0.0
    """Decoupled weight decay."""
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam betas."""
    eps: float = 1e-8
    """Adam epsilon."""
    lr_mult: Dict[str, float] = field(default_factory=dict)
    """Parameter selector -> lr multiplier: fnmatch patterns as model.trainable ("*.lora_*": 2.0) or a bare prefix (vision: 0.2); the longest matching key wins."""
    scheduler: str = "cosine"
    """Schedule: a key of ``vau.lit.optim.SCHEDULERS`` (constant, cosine, linear)."""
    warmup_steps: int = 0
    """Linear warmup steps (takes precedence over warmup_ratio when > 0)."""
    warmup_ratio: float = 0.0
    """Warmup as a fraction of total_steps."""
    total_steps: Optional[int] = None
    """Steps the schedule spans; null = the trainer's estimate (max_steps or epochs)."""


@dataclass
class DeepSpeedConfig:
    """DeepSpeed settings handed to Lightning's DeepSpeedStrategy."""

    config: Optional[str] = None
    """DeepSpeed JSON file; a relative path is looked up under the conf/ directory."""


@dataclass
class TrainerConfig:
    """Lightning Trainer settings; the strategy comes from a registry."""

    strategy: str = "auto"
    """Strategy: a key of ``vau.lit.strategies.STRATEGIES`` (auto, ddp, deepspeed)."""
    accelerator: str = "auto"
    """cpu, gpu/cuda or auto."""
    devices: Any = "auto"
    """Devices per node: an int, a list of indices or 'auto'."""
    num_nodes: int = 1
    """Number of nodes."""
    precision: str = "32-true"
    """Lightning precision string: 32-true, bf16-mixed, bf16-true, 16-mixed."""
    accumulate_grad_batches: int = 1
    """Micro-batches per optimizer step (set from global_batch_size when that is given)."""
    global_batch_size: Optional[int] = None
    """Samples per optimizer step over all devices; set: accumulation = it / (data.batch_size x devices x nodes), so fewer GPUs keep the batch."""
    gradient_clip_val: Optional[float] = None
    """Clip gradient norm to this value; null = no clipping."""
    max_steps: int = -1
    """Stop after this many optimizer steps; -1 = use max_epochs."""
    max_epochs: Optional[int] = None
    """Stop after this many epochs; null = unbounded when max_steps is set."""
    val_check_interval: Optional[float] = None
    """Validate every N steps (int-valued) or fraction of an epoch; null = once per epoch."""
    check_val_every_n_epoch: Optional[int] = 1
    """Validate every N epochs; null with an int val_check_interval counts steps across epochs."""
    limit_val_batches: float = 1.0
    """Fraction (<=1.0) or number of validation batches."""
    num_sanity_val_steps: int = 0
    """Validation batches run before training starts."""
    log_every_n_steps: int = 1
    """Logging cadence in optimizer steps."""
    deterministic: bool = False
    """Ask PyTorch for deterministic algorithms."""
    ddp_backend: Optional[str] = None
    """Process-group backend; null = gloo on CPU, nccl on GPU."""
    progress_bar: str = "auto"
    """auto (rich on a terminal, plain lines otherwise), rich, tqdm, lines (a log line per N steps) or none."""
    progress_every_n_steps: Optional[int] = None
    """Steps between the plain progress lines (progress_bar=lines); null = log_every_n_steps."""
    throughput_window: int = 10
    """Batches averaged for samples/s and tokens/s."""
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    """DeepSpeed settings (used when strategy=deepspeed)."""


@dataclass
class CheckpointConfig:
    """Full-state checkpoints (for resume) and exports (for the next stage / eval)."""

    every_n_steps: int = 100
    """Write a full-state checkpoint every N optimizer steps (and at the last step)."""
    keep: int = 3
    """Number of newest step checkpoints kept (last.ckpt is kept in addition)."""
    save_last: bool = True
    """Also keep checkpoints/last.ckpt: a link to the newest step checkpoint (not a second copy)."""
    frozen: bool = False
    """Also store frozen parameters in full-state checkpoints (false: left out, rebuilt from the model's sources)."""
    export: bool = True
    """Write <run.dir>/export/ (trainable weights + config) when training ends."""
    monitor: Optional[str] = None
    """Validation metric whose best value keeps <run.dir>/best/ (an export), e.g. val/loss; null = none."""
    mode: str = "min"
    """min or max: which way ``monitor`` improves."""


WANDB_MODES = ("offline", "online", "disabled")
"""wandb modes a config may name (wandb's own spellings; ``disabled`` = no wandb run)."""


def wandb_mode_of(mode: str, key: str) -> str:
    """``mode`` checked against :data:`WANDB_MODES`; the old ``none`` still means disabled.

    Raises:
        ConfigError: Any other value, naming ``key``.
    """
    if mode == "none":
        logging.getLogger("vau").warning("%s=none: spelled 'disabled' now (as wandb spells it)", key)
        return "disabled"
    if mode not in WANDB_MODES:
        raise ConfigError(f"{key}={mode!r}: expected {', '.join(WANDB_MODES)}")
    return mode


@dataclass
class WandbConfig:
    """Weights & Biases settings."""

    mode: Optional[str] = None
    """offline, online or disabled; null = $WANDB_MODE, else offline."""
    project: str = "vau"
    """wandb project."""
    entity: Optional[str] = None
    """wandb entity (team or user)."""
    group: Optional[str] = None
    """wandb group (sweeps put all members in one group)."""
    tags: List[str] = field(default_factory=list)
    """wandb tags."""
    name: Optional[str] = None
    """wandb run name; null = run.name."""


@dataclass
class LoggerConfig:
    """Loggers: metrics.csv is always written; wandb as configured."""

    wandb: WandbConfig = field(default_factory=WandbConfig)
    """wandb logger settings."""
    val_samples: int = 4
    """Held-out clips whose generated answers are logged at each validation (wandb table val/samples, val_samples.jsonl); 0 = none."""
    val_samples_max_new_tokens: int = 48
    """New tokens per validation-sample answer at most (greedy)."""


@dataclass
class RunConfig:
    """A whole run: one resolved, typed config."""

    run: RunSection = field(default_factory=RunSection)
    """Run identity and directory."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model section (family specific)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data section (family specific)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Lightning Trainer settings."""
    ckpt: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint and export settings."""
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    """Logger settings."""
    resume: Optional[str] = None
    """null = fresh run; auto = newest full-state checkpoint in run.dir if any; or a path."""
    init_from: Optional[str] = None
    """Export directory whose weights initialise the model (weights only, not a resume)."""

    RENAMED: ClassVar[Dict[str, str]] = {
        "optim.name": "optim.kind",
        "model.connector.name": "model.connector.kind",
    }
    """Old key -> its spelling now; the loader moves a value found under the old key (with a warning)."""

    POSITIVE: ClassVar[tuple[str, ...]] = (
        "data.batch_size", "data.val_batch_size", "data.decode.frames", "ckpt.every_n_steps", "ckpt.keep",
        "trainer.accumulate_grad_batches", "trainer.log_every_n_steps", "trainer.num_nodes",
        "data.bad_window", "data.first_good_within", "logger.val_samples_max_new_tokens",
    )
    """Keys that must be > 0 when set (0 would divide by zero or silently switch a feature off)."""

    @classmethod
    def check(cls, cfg: Any) -> None:
        """Refuses values the types admit but no run can use; raises ConfigError (one line)."""
        for key in cls.POSITIVE:
            value = OmegaConf.select(cfg, key, default=None)
            if value is not None and value <= 0:
                raise ConfigError(f"{key}={value}: expected a positive integer")
        workers = OmegaConf.select(cfg, "data.num_workers", default=0)
        if workers < 0:
            raise ConfigError(f"data.num_workers={workers}: expected 0 (load in the main process) or more")
        samples = OmegaConf.select(cfg, "logger.val_samples", default=0)
        if samples < 0:
            raise ConfigError(f"logger.val_samples={samples}: expected 0 (none) or more")
        fraction = OmegaConf.select(cfg, "data.max_bad_fraction", default=None)
        if fraction is not None and not 0 < fraction <= 1:
            raise ConfigError(f"data.max_bad_fraction={fraction}: expected a fraction in (0, 1] (1 = never fail)")
