"""Lightning DataModule over tar shards, with its stream position in every checkpoint."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Optional

import torch

from vau.data.media.decode import SampleDecoder, collate
from vau.data.shards.shardlist import expand_shards, shard_sizes
from vau.data.loading.datamodule import DataModuleBase
from vau.data.loading.stream import META, ShardLoader, ShardStream, Source
from vau.errors import ConfigError, NotFoundError

log = logging.getLogger("vau.data")


def resolve_sources(sources: Any, what: str, allow_pipe: bool = False) -> list[Source]:
    """``data.train``/``data.val`` config entries -> :class:`Source` objects (shards expanded; ``pipe:`` only if allowed)."""
    out = []
    for i, s in enumerate(sources):
        if s.weight <= 0:
            raise ConfigError(f"{what}[{i}].weight must be > 0, got {s.weight}")
        try:
            urls = expand_shards(s.shards, allow_pipe=allow_pipe)
        except FileNotFoundError as e:
            raise NotFoundError(f"{what}[{i}].shards: {e}") from None
        out.append(Source(tuple(urls), float(s.weight), s.name or s.shards))
    return out


class ShardDataModule(DataModuleBase):
    """Builds training (resampled, mixed, shuffled) and validation (single pass) loaders.

    Families customise it with ``decoder(train)`` (raw sample -> decoded sample) and
    ``collate_fn``. The data position (per rank: each logical worker's raw-sample cursor and
    batch count, and which worker is due next) is saved by Lightning's DataModule
    ``state_dict`` hook, so ``resume=auto`` continues without repeating or skipping samples.
    """

    collate_fn: Callable[[list], dict] = staticmethod(collate)

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self._train: Optional[ShardStream] = None
        self._val: Optional[ShardStream] = None
        self._position: dict[int, dict] = {}
        self._position_epoch: Optional[int] = None
        self._last_worker: Optional[int] = None

    # --- hooks for families ---------------------------------------------------------------
    def decoder(self, train: bool) -> Callable[[dict], dict]:
        """Raw sample -> decoded sample (raises ValueError for a bad sample)."""
        return SampleDecoder(self.cfg.data.decode, train=train, seed=self.cfg.run.seed)

    def check(self) -> None:
        """Fails in one line before any model is built: a missing ``data.root`` or unmatched shard specs."""
        d = self.cfg.data
        specs = [str(s.shards) for s in [*d.train, *d.val]]
        root = str(d.root)
        if root and any(sp.startswith(root) for sp in specs) and not os.path.isdir(os.path.expanduser(root)):
            raise NotFoundError(f"data.root={root}: no such folder (set data.root=PATH or $VAU_DATA; "
                                    "`vau synth` writes synthetic shards)")
        resolve_sources(d.train, "data.train", d.allow_pipe)
        resolve_sources(d.val, "data.val", d.allow_pipe)

    # --- loaders ----------------------------------------------------------------------------
    def epoch_batches(self, sources: list[Source], world: int) -> Optional[int]:
        """Batches per rank per epoch: ``samples_per_epoch`` (or the shards' size) / global batch."""
        d = self.cfg.data
        total = d.samples_per_epoch
        if total is None:
            sizes = [shard_sizes(s.urls) for s in sources]
            if any(x is None for x in sizes):
                return None  # endless: max_steps ends the run
            total = sum(sum(x) for x in sizes)
        n = total // (d.batch_size * world)
        if n < 1:
            raise ConfigError(f"data.samples_per_epoch={total} is smaller than one global batch ({d.batch_size}x{world})")
        return n

    def _loader(self, stream: ShardStream) -> ShardLoader:
        nw = self.cfg.data.num_workers
        # Workers restart each epoch (persistent_workers=False) so they see the new epoch's
        # seed; with epoch-long streams the restart cost is negligible.
        return ShardLoader(stream, self._epoch, num_workers=nw, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> ShardLoader:
        if not self.cfg.data.train:
            raise ConfigError("data.train lists no shard sources")
        d, (rank, world) = self.cfg.data, self._rank_world()
        sources = resolve_sources(d.train, "data.train", d.allow_pipe)
        self._train = ShardStream(
            sources, self.decoder(True), self.collate_fn, d.batch_size, train=True, seed=self.cfg.run.seed,
            rank=rank, world_size=world, epoch_batches=self.epoch_batches(sources, world),
            shuffle_buffer=d.shuffle_buffer if d.shuffle else 0, shuffle_initial=d.shuffle_initial,
            max_bad_fraction=d.max_bad_fraction, bad_window=d.bad_window, first_good_within=d.first_good_within,
        )
        self._position, self._position_epoch, self._last_worker = {}, None, None
        if self._resume is not None:
            self._apply_resume(self._resume, rank, world)
            self._resume = None
        return self._loader(self._train)

    def val_dataloader(self) -> Any:
        d, (rank, world) = self.cfg.data, self._rank_world()
        if not d.val:
            return []
        sources = resolve_sources(d.val, "data.val", d.allow_pipe)
        n = sum(len(s.urls) for s in sources)
        if n < world * max(1, d.num_workers):
            log.warning("data.val has %d shard(s) for %d rank(s) x %d worker(s): some read nothing", n, world, max(1, d.num_workers))
        self._val = ShardStream(sources, self.decoder(False), self.collate_fn, d.val_batch_size or d.batch_size,
                                train=False, seed=self.cfg.run.seed, rank=rank, world_size=world,
                                max_bad_fraction=d.max_bad_fraction, bad_window=d.bad_window,
                                first_good_within=d.first_good_within)
        return self._loader(self._val)

    # --- position tracking ------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Strips the stream position from a batch; records it for batches the model trains on."""
        meta = batch.pop(META, None) if isinstance(batch, dict) else None
        if meta is not None and self.trainer is not None and self.trainer.training:
            if meta["epoch"] != self._position_epoch:
                # A new epoch: workers that have not yet delivered a batch of it start at 0,
                # not at the previous epoch's cursor (which would shrink their quota to 0).
                self._position, self._last_worker = {}, None
                self._position_epoch = int(meta["epoch"])
            w = int(meta["worker"])
            self._position[w] = {"cursor": int(meta["cursor"]), "batches": int(meta["batches"])}
            self._last_worker = w
        return batch

    def bad_samples(self, train: bool = True) -> int:
        """Bad samples skipped so far in the current training epoch / validation pass (this rank)."""
        stream = self._train if train else self._val
        return stream.bad_samples if stream is not None else 0

    def state_dict(self) -> dict[str, Any]:
        """Data position of every rank (gathered to the rank that writes the checkpoint)."""
        if self.trainer is None or self._train is None:
            return {}
        nw = max(1, self.cfg.data.num_workers)
        epoch = self._position_epoch if self._position else self._epoch()
        mine = {
            "workers": {str(k): v for k, v in self._position.items()},
            "next_worker": 0 if self._last_worker is None else (self._last_worker + 1) % nw,
            "bad": self.bad_samples(True),
        }
        if self._train.epoch_batches is not None and \
                sum(v["batches"] for v in self._position.values()) >= self._train.epoch_batches:
            # The epoch's last batch is done: resume at the start of the next epoch (ranks agree,
            # they all run the same number of batches), never into an empty rest of this one.
            epoch, mine = epoch + 1, {"workers": {}, "next_worker": 0, "bad": 0}
        ranks = [mine]
        if torch.distributed.is_available() and torch.distributed.is_initialized() and self.trainer.world_size > 1:
            ranks = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(ranks, mine)
        return {"epoch": epoch, "num_workers": nw, "ranks": ranks}

    def _apply_resume(self, state: dict, rank: int, world: int) -> None:
        nw = max(1, self.cfg.data.num_workers)
        if state["num_workers"] != nw or len(state["ranks"]) != world:
            log.warning(
                "data position saved with %d rank(s) x %d worker(s), now %d x %d: epoch %d restarts its stream "
                "(samples of this epoch may repeat)", len(state["ranks"]), state["num_workers"], world, nw, state["epoch"])
            self._train.set_epoch(int(state["epoch"]))
            self._train.resume({}, 0)
            return
        mine = state["ranks"][rank]
        self._train.set_epoch(int(state["epoch"]))
        self._train.resume({int(k): v for k, v in mine["workers"].items()}, int(mine["next_worker"]), int(mine.get("bad", 0)))
        self._position = {int(k): dict(v) for k, v in mine["workers"].items()}
        self._position_epoch = int(state["epoch"])
        self._last_worker = (int(mine["next_worker"]) - 1) % nw if mine["workers"] else None
