"""The shard reading pipeline: an IterableDataset that yields collated batches.

Stages, in the order open_clip runs them (and why):

* **Training** — every (rank, worker) draws shards *with replacement* from each source
  (resampled shards: no rank or worker ever runs dry, so all ranks take the same number of
  steps and DDP never waits on an empty rank), mixes sources per sample by weight (the mix
  ratio holds whatever the shard sizes), and shuffles samples in a buffer. All randomness is
  seeded by (seed, epoch, rank, worker), so the stream is a pure function of its position:
  resuming replays the raw stream up to the saved cursor (reading, not decoding) and
  continues exactly where the interrupted run stopped.
* **Evaluation** — an exact single pass: the shard list is split by node (rank), then by
  worker, each shard read once in order, the last partial batch kept.
* Both read tar files sample by sample (``vau.data.tario``) and pass each sample through the
  decoder; a truncated tar, an undecodable media file or a bad annotation becomes a counted,
  logged bad sample, never an exception.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.filters import _shuffle

from vau.data.tario import BadSample, iter_shard

log = logging.getLogger("vau.data")

META = "__data__"
"""Batch key carrying the producing worker's stream position (stripped before the model)."""


@dataclass(frozen=True)
class Source:
    """A resolved shard set of a mix."""

    urls: tuple[str, ...]
    """Shard paths."""
    weight: float = 1.0
    """Relative sampling weight (training)."""
    name: str = ""
    """Label for logs."""


def _rng(*parts: Any) -> random.Random:
    # String seeds go through SHA-512 in random.Random: stable across processes and runs,
    # unlike hash() of a tuple.
    return random.Random("/".join(map(str, parts)))


def _resampled(source: Source, rng: random.Random) -> Iterator[Any]:
    while True:
        yield from iter_shard(rng.choice(source.urls))


def _mix(sources: Sequence[Source], rng: random.Random) -> Iterator[Any]:
    streams = [_resampled(s, random.Random(rng.random())) for s in sources]
    if len(streams) == 1:
        yield from streams[0]
    weights = [s.weight for s in sources]
    while True:
        yield next(rng.choices(streams, weights)[0])


def worker_share(total: int, worker: int, num_workers: int) -> int:
    """Batches worker ``worker`` yields when ``total`` are split round-robin over ``num_workers``."""
    return (total - worker + num_workers - 1) // num_workers


class ShardStream(IterableDataset):
    """Batches from tar shards; see the module docstring for the stage order.

    Args:
        sources: Shard sets (training: mixed by weight; evaluation: concatenated).
        decode: Raw sample -> decoded sample; raises ValueError for a bad sample.
        collate_fn: List of decoded samples -> batch dict.
        batch_size: Samples per batch.
        train: Resampled + shuffled stream (True) or exact single pass (False).
        seed: Base seed of shard choice, mixing, shuffling and per-sample randomness.
        rank: This process's global rank.
        world_size: Number of processes.
        epoch_batches: Batches per rank per epoch in training (None: endless).
        shuffle_buffer: Shuffle buffer size per worker (training); <= 1 keeps the mixed order.
        shuffle_initial: Buffer fill before the first sample.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        decode: Callable[[dict], dict],
        collate_fn: Callable[[list], dict],
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_batches: Optional[int] = None,
        shuffle_buffer: int = 256,
        shuffle_initial: int = 64,
    ) -> None:
        if not sources:
            raise ValueError("no shard sources given")
        self.sources = list(sources)
        self.decode, self.collate_fn, self.batch_size = decode, collate_fn, batch_size
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.epoch_batches = epoch_batches
        self.shuffle_buffer, self.shuffle_initial = shuffle_buffer, min(shuffle_initial, shuffle_buffer)
        self.epoch = 0
        self.start: dict[int, dict] = {}
        self.next_worker = 0
        self.resume_pending = False
        """The next pass continues from ``start`` in ``epoch`` (set by :meth:`resume`)."""
        # Shared with the worker processes (passed at their start): bad samples this epoch,
        # per logical worker, so the main process can log the count.
        self._bad = mp.Array("q", 64, lock=True)

    def set_epoch(self, epoch: int) -> None:
        """Starts ``epoch`` from its beginning (reseeds the stream) and resets the bad-sample count."""
        self.start, self.next_worker = {}, 0
        self.epoch = epoch
        with self._bad.get_lock():
            self._bad[:] = [0] * len(self._bad)

    def resume(self, workers: dict[int, dict], next_worker: int, bad: int = 0) -> None:
        """Continues the current epoch from saved positions.

        Args:
            workers: Logical worker -> ``{"cursor": raw samples consumed, "batches": batches consumed}``.
            next_worker: Logical worker whose batch comes next (DataLoaders round-robin over workers).
            bad: Bad samples already counted this epoch.
        """
        self.start = {int(k): dict(v) for k, v in workers.items()}
        self.next_worker = next_worker
        self._bad[0] = bad
        self.resume_pending = True

    def __len__(self) -> int:
        """Batches per epoch on this rank (training with a known epoch length).

        Lightning needs the length to tell an epoch's last batch, to count a checkpoint taken
        on it as the end of the epoch and to restart the next epoch clean on resume.
        """
        if not self.train or self.epoch_batches is None:
            raise TypeError("this shard stream has no length (evaluation pass or endless epoch)")
        return self.epoch_batches

    @property
    def bad_samples(self) -> int:
        """Bad samples met this epoch, summed over workers (includes prefetched ones)."""
        with self._bad.get_lock():
            return int(sum(self._bad))

    def _raw(self, worker: int, num_workers: int) -> Iterator[Any]:
        if self.train:
            mixed = _mix(self.sources, _rng(self.seed, self.epoch, self.rank, worker, "mix"))
            if self.shuffle_buffer <= 1:
                return mixed
            shuffle_rng = _rng(self.seed, self.epoch, self.rank, worker, "shuffle")
            return _shuffle(mixed, self.shuffle_buffer, self.shuffle_initial, rng=shuffle_rng)
        urls = [u for s in self.sources for u in s.urls]
        # Split by node first, then by worker: each shard is read by exactly one worker.
        mine = urls[self.rank :: self.world_size][worker::num_workers]
        return itertools.chain.from_iterable(iter_shard(u) for u in mine)

    def _bad_sample(self, worker: int, item: Any, reason: str) -> None:
        with self._bad.get_lock():
            self._bad[worker % len(self._bad)] += 1
        log.warning("skipped bad sample %s in %s: %s", item.get("__key__", "?") if isinstance(item, dict) else item.key,
                    item.get("__url__", "?") if isinstance(item, dict) else item.url, reason)

    def __iter__(self) -> Iterator[dict]:
        # Not a generator itself: the position is read now, when the loader asks for the
        # iterator, not at the first next() (after ShardLoader has cleared it).
        info = get_worker_info()
        num_workers, physical = (info.num_workers, info.id) if info is not None else (1, 0)
        # Physical worker 0 answers the loader's first request; in a resumed epoch it must
        # play the logical worker whose batch is due next, or the batch order would shift.
        worker = (physical + self.next_worker) % num_workers
        start = self.start.get(worker, {"cursor": 0, "batches": 0})
        quota = None
        if self.train and self.epoch_batches is not None:
            quota = worker_share(self.epoch_batches, worker, num_workers) - int(start["batches"])
        if hasattr(self.decode, "epoch"):
            self.decode.epoch = self.epoch
        return self._batches(worker, num_workers, int(start["cursor"]), int(start["batches"]), quota)

    def _batches(self, worker: int, num_workers: int, cursor: int, batches: int, quota: Optional[int]) -> Iterator[dict]:
        if quota is not None and quota <= 0:
            return
        first = batches
        raw = self._raw(worker, num_workers)
        for _ in itertools.islice(raw, cursor):  # replay: read, do not decode
            pass
        batch: list[dict] = []
        for item in raw:
            cursor += 1
            if isinstance(item, BadSample):
                self._bad_sample(worker, item, item.reason)
                continue
            try:
                batch.append(self.decode(item))
            except Exception as e:  # noqa: BLE001 - any failure of one sample must not stop the run
                self._bad_sample(worker, item, f"{type(e).__name__}: {' '.join(str(e).split())}")
                continue
            if len(batch) == self.batch_size:
                batches += 1
                yield self._emit(batch, worker, cursor, batches)
                batch = []
                if quota is not None and batches - first >= quota:
                    return
        if batch and not self.train:
            yield self._emit(batch, worker, cursor, batches + 1)

    def _emit(self, samples: list[dict], worker: int, cursor: int, batches: int) -> dict:
        out = self.collate_fn(samples)
        out[META] = {"epoch": self.epoch, "worker": worker, "cursor": cursor, "batches": batches}
        return out


class ShardLoader(DataLoader):
    """DataLoader over a :class:`ShardStream` that tells the stream its epoch on each ``iter``.

    Lightning calls ``set_epoch`` only on samplers, which an IterableDataset does not have.
    """

    def __init__(self, dataset: ShardStream, epoch_fn: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=None, **kwargs)
        self.epoch_fn = epoch_fn

    def __iter__(self):  # type: ignore[override]
        if self.dataset.resume_pending:
            # A resumed epoch keeps the saved epoch: Lightning builds this iterator before it
            # restores its own epoch counter, so ``epoch_fn`` may still name the previous epoch.
            self.dataset.resume_pending = False
        else:
            self.dataset.set_epoch(self.epoch_fn())
        it = super().__iter__()
        # The saved position applies to the first pass only; later passes start the epoch fresh.
        self.dataset.start, self.dataset.next_worker = {}, 0
        return it
