"""Base DataModule: map-style datasets with a data position that survives resume."""

from __future__ import annotations

from typing import Any, Callable, Optional

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from vau.data.loading.sampler import ResumableSampler
from vau.signals import ignore_stop_signals


class DataModuleBase(L.LightningDataModule):
    """What every family DataModule shares: the config, this process's rank and world size, the
    epoch, and a saved data position held until the train loader is built (``_resume``).

    Subclasses define the loaders and ``state_dict`` (their position); ``check()`` may refuse
    a config in one line before any model is built.
    """

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self._resume: Optional[dict] = None

    def check(self) -> None:
        """Refuses data settings that cannot work, before the model is built (nothing to check here)."""

    def _rank_world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def load_state_dict(self, state: dict) -> None:
        """Keeps the saved data position; applied when the train loader is next built."""
        if state:
            self._resume = dict(state)


class VauDataModule(DataModuleBase):
    """Builds loaders from ``train_dataset()``/``val_dataset()``; persists the data position.

    The position (epoch, micro-batches processed in it) is written into every full-state
    checkpoint through Lightning's DataModule ``state_dict`` hook and restored before the
    first batch is drawn, so a resumed run sees exactly the samples an uninterrupted one would.
    Subclasses implement the dataset factories and may set ``collate_fn``.
    """

    collate_fn: Optional[Callable] = None

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self._train_sampler: Optional[ResumableSampler] = None

    def train_dataset(self) -> Dataset:
        """The training dataset (map-style)."""
        raise NotImplementedError

    def val_dataset(self) -> Optional[Dataset]:
        """The validation dataset, or None for no validation."""
        return None

    def _loader(self, dataset: Dataset, sampler: ResumableSampler, batch_size: int, drop_last: bool) -> DataLoader:
        nw = self.cfg.data.num_workers
        return DataLoader(
            dataset,
            batch_sampler=BatchSampler(sampler, batch_size, drop_last=drop_last),
            num_workers=nw,
            collate_fn=self.collate_fn,
            persistent_workers=nw > 0,
            worker_init_fn=ignore_stop_signals,  # the main process owns the stop (vau.signals)
            # A private generator: iterating a loader must not consume the global RNG, or a
            # resumed run (which re-creates its loader) would draw different dropout masks.
            generator=torch.Generator().manual_seed(self.cfg.run.seed),
        )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        ds = self.train_dataset()
        self._train_sampler = ResumableSampler(
            len(ds), shuffle=self.cfg.data.shuffle, seed=self.cfg.run.seed, rank=rank, world_size=world
        )
        if self._resume is not None:
            self._train_sampler.resume(self._resume["epoch"], self._resume["batches"] * self.cfg.data.batch_size)
            self._resume = None
        return self._loader(ds, self._train_sampler, self.cfg.data.batch_size, drop_last=True)

    def val_dataloader(self) -> Any:
        ds = self.val_dataset()
        if ds is None:
            return []
        rank, world = self._rank_world()
        sampler = ResumableSampler(len(ds), shuffle=False, seed=self.cfg.run.seed, rank=rank, world_size=world)
        return self._loader(ds, sampler, self.cfg.data.val_batch_size or self.cfg.data.batch_size, drop_last=False)

    def state_dict(self) -> dict[str, int]:
        """Data position: the current epoch and the micro-batches already processed in it."""
        trainer = self.trainer
        if trainer is None:
            return {}
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": trainer.current_epoch, "batches": progress.processed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restores the data position; applied when the train loader is next built."""
        super().load_state_dict(state)
        if state:
            if self._train_sampler is not None:  # loader already built (rare): patch it in place
                self._train_sampler.resume(state["epoch"], state["batches"] * self.cfg.data.batch_size)
                self._resume = None
