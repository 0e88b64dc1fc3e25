"""What `vau` commands print: vau's own log lines, and the library noise left out.

Each command's output is meant to be read in an sbatch log: vau's messages go to stderr as
plain lines; library tips, deprecation warnings about the libraries' own internals, wandb's
banner and HF's per-file progress bars are dropped (what they say is either in vau's own
lines or not actionable for the user). Warnings that matter to a run (a user's own code, a
data problem) keep showing.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from vau.progress import interactive

#: Warnings about the libraries' own code, or about choices vau made on purpose (each says why).
_QUIET_WARNINGS = (
    # vau runs without srun off SLURM on purpose; under SLURM the launch scripts use srun.
    r"The `srun` command is available on your system but is not used",
    # Inside Lightning's own pytree helper (torch 2.13 renamed LeafSpec); nothing a user can change.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # The shard stream splits by rank and worker itself, so its __len__ is exact (vau.data.loading.stream).
    r"Your `IterableDataset` has `__len__` defined",
    # Frozen towers (CLIP, the LLM in stage 1) are kept in eval mode by design (no dropout drift).
    r"Found \d+ module\(s\) in eval mode at the start of training",
    # transformers calls its own deprecated alias internally.
    r"`is_gradient_checkpointing` is deprecated",
)
#: Log records of libraries that are advertising or state a default, not news.
_QUIET_RECORDS = ("💡 Tip:", "was configured so 100% of the batches", "Setting accelerator to CPU")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in _QUIET_RECORDS)


def setup() -> None:
    """Configures logging and warning filters for a `vau` command (idempotent)."""
    vau = logging.getLogger("vau")
    if not any(getattr(h, "_vau", False) for h in vau.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._vau = True  # type: ignore[attr-defined]
        vau.addHandler(handler)
        vau.setLevel(logging.INFO)
    for message in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    noise = _DropNoise()
    for name in ("lightning.pytorch", "lightning.pytorch.utilities.rank_zero", "lightning.fabric", "DeepSpeed"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(noise)
    # wandb's banner and summary (about 130 lines per run): vau logs where the run is instead.
    os.environ.setdefault("WANDB_SILENT", "true")
    if not interactive():  # per-file progress bars of HF loading/saving are noise in a log file
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
