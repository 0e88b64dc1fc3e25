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
* Both read tar files sample by sample (``vau.data.shards.tario``) and pass each sample through the
  decoder; a truncated tar, an undecodable media file or a bad annotation becomes a counted,
  logged bad sample, never an exception.
* Bad data is bounded: per worker and pass, log lines of bad samples are rate-limited, and
  the run fails with a one-line :class:`vau.errors.DataError` once the first
  ``first_good_within`` reads held no good sample, more than ``max_bad_fraction`` of the last
  ``bad_window`` reads were bad, or a training source's shards hold no sample at all.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import random
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.filters import _shuffle

from vau.data.shards.tario import BadSample, iter_shard
from vau.errors import DataError
from vau.signals import ignore_stop_signals

log = logging.getLogger("vau.data")

META = "__data__"
"""Batch key carrying the producing worker's stream position (stripped before the model)."""

ERROR = "__data_error__"
"""Key of the marker a stream yields in place of a batch when its data fails a limit (raised by ShardLoader)."""

LOG_FULL = 10
"""Bad samples logged in full per worker and pass; later ones only at each power-of-two count, as a summary."""


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
    shards = len(set(source.urls))
    empty: set[str] = set()  # shards read whole, holding nothing, since the last one that held anything
    while True:
        url = rng.choice(source.urls)
        held = False
        for item in iter_shard(url):
            held = True
            yield item
        if held:
            empty.clear()
            continue
        empty.add(url)
        # Resampling never ends by itself: shards without a single member (zero-member tars)
        # would be reopened forever, yielding nothing, and the run would never take a step.
        if len(empty) == shards:
            raise DataError(f"no samples in {shards} shard(s) of source {source.name or source.urls[0]} "
                            f"(e.g. {url}): every one was read to its end and held none (empty tar files?)")


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
        max_bad_fraction: Fail when more than this fraction of a worker's last ``bad_window``
            reads were bad (1.0 = never).
        bad_window: Reads the bad fraction is taken over, per worker.
        first_good_within: Fail when a worker's first this many reads of a pass held no good sample.
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
        max_bad_fraction: float = 0.5,
        bad_window: int = 1000,
        first_good_within: int = 100,
    ) -> None:
        if not sources:
            raise ValueError("no shard sources given")
        self.max_bad_fraction, self.bad_window, self.first_good_within = max_bad_fraction, bad_window, first_good_within
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
        return self._reported(self._batches(worker, num_workers, int(start["cursor"]), int(start["batches"]), quota))

    def _reported(self, batches: Iterator[dict]) -> Iterator[dict]:
        """``batches``, ended by an error marker where the data failed a limit (ShardLoader raises it)."""
        try:
            yield from batches
        except DataError as e:
            # Raised in a DataLoader worker, the error would reach the main process re-built
            # with the worker's whole traceback as its message; a marker batch carries the
            # one-line message instead, the same way with and without workers.
            yield {ERROR: str(e)}

    def _batches(self, worker: int, num_workers: int, cursor: int, batches: int, quota: Optional[int]) -> Iterator[dict]:
        if quota is not None and quota <= 0:
            return
        first = batches
        raw = self._raw(worker, num_workers)
        for _ in itertools.islice(raw, cursor):  # replay: read, do not decode
            pass
        bad = _BadData(self, worker)  # the replayed reads were counted by the interrupted run
        batch: list[dict] = []
        for item in raw:
            cursor += 1
            if isinstance(item, BadSample):
                bad.skip(item.key, item.url, item.reason)
                continue
            try:
                batch.append(self.decode(item))
            except Exception as e:  # noqa: BLE001 - one bad sample must not stop the run (the limits do)
                bad.skip(item.get("__key__", "?"), item.get("__url__", "?"), f"{type(e).__name__}: {' '.join(str(e).split())}")
                continue
            bad.good()
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


class _BadData:
    """One worker's reads in one pass: counts bad ones, logs them rate-limited, enforces the limits."""

    def __init__(self, stream: ShardStream, worker: int) -> None:
        self.stream, self.worker = stream, worker
        self.goods = self.bads = 0
        self.window: deque[bool] = deque(maxlen=stream.bad_window)  # the last reads, True = bad
        self.window_bads = 0

    def _read(self, is_bad: bool) -> None:
        if len(self.window) == self.window.maxlen:
            self.window_bads -= self.window[0]  # about to fall out of the window
        self.window.append(is_bad)
        self.window_bads += is_bad

    def good(self) -> None:
        """Records a sample read and decoded whole."""
        self.goods += 1
        self._read(False)

    def skip(self, key: str, url: str, reason: str) -> None:
        """Counts and logs one bad sample; raises DataError once a limit is passed."""
        s = self.stream
        with s._bad.get_lock():
            s._bad[self.worker % len(s._bad)] += 1
        self.bads += 1
        self._read(True)
        latest = f"{key} in {url}: {reason}"
        n = self.bads
        # A bad shard set would otherwise log a line per read, millions of them, for ever.
        if n <= LOG_FULL:
            log.warning("skipped bad sample %s%s", latest,
                        f" (worker {self.worker} logs further ones as a summary at each power-of-two count)"
                        if n == LOG_FULL else "")
        elif n & (n - 1) == 0:
            log.warning("skipped %d bad samples so far in worker %d this pass; latest: %s", n, self.worker, latest)
        reads = self.goods + self.bads
        if not self.goods and reads >= s.first_good_within:
            raise DataError(f"no good sample in the first {reads} reads of worker {self.worker} "
                            f"(data.first_good_within={s.first_good_within}); latest: {latest}")
        if len(self.window) == s.bad_window and self.window_bads > s.max_bad_fraction * s.bad_window:
            raise DataError(f"{self.window_bads} of the last {s.bad_window} reads of worker {self.worker} were bad "
                            f"(data.max_bad_fraction={s.max_bad_fraction}, data.bad_window={s.bad_window}); "
                            f"latest: {latest}")


class _RaiseDataErrors:
    """A DataLoader iterator whose error markers (see ``ShardStream._reported``) raise DataError here."""

    def __init__(self, it: Iterator[dict]) -> None:
        self._it = it

    def __iter__(self) -> "_RaiseDataErrors":
        return self

    def __next__(self) -> dict:
        batch = next(self._it)
        if isinstance(batch, dict) and ERROR in batch:
            # Stop the workers now: left to the garbage collector, the shutdown (with its join
            # timeouts) would run at some later, arbitrary point, e.g. in the middle of an import.
            shutdown = getattr(self._it, "_shutdown_workers", None)  # multi-process iterators only
            if shutdown is not None:
                shutdown()
            raise DataError(batch[ERROR])
        return batch


class ShardLoader(DataLoader):
    """DataLoader over a :class:`ShardStream` that tells the stream its epoch on each ``iter``.

    Lightning calls ``set_epoch`` only on samplers, which an IterableDataset does not have.
    Data that fails a bad-data limit raises :class:`vau.errors.DataError` (one line) here, in
    the process that iterates, whichever worker met it.
    """

    def __init__(self, dataset: ShardStream, epoch_fn: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=None, worker_init_fn=ignore_stop_signals, **kwargs)
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
        return _RaiseDataErrors(it)
