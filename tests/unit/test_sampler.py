"""ResumableSampler (seeded, rank-split, resumable) and the synthetic token data."""

from __future__ import annotations

import pytest
import torch

from vau.data.loading.sampler import ResumableSampler
from vau.families.lm.data import TokenPatternDataset


def _epoch(sampler: ResumableSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_same_seed_and_epoch_same_order():
    a = ResumableSampler(50, shuffle=True, seed=3)
    b = ResumableSampler(50, shuffle=True, seed=3)
    assert _epoch(a, 2) == _epoch(b, 2)
    assert _epoch(a, 2) == _epoch(a, 2)  # repeatable on the same object
    assert sorted(_epoch(a, 2)) == list(range(50))  # a permutation


def test_different_epoch_or_seed_different_order():
    s = ResumableSampler(50, shuffle=True, seed=3)
    e0, e1 = _epoch(s, 0), _epoch(s, 1)
    assert e0 != e1 and sorted(e0) == sorted(e1)
    assert _epoch(ResumableSampler(50, shuffle=True, seed=4), 0) != e0


def test_no_shuffle_is_in_order():
    assert _epoch(ResumableSampler(7, shuffle=False, seed=0), 5) == list(range(7))
    r1 = ResumableSampler(7, shuffle=False, seed=0, rank=1, world_size=2)
    assert list(r1) == [1, 3, 5]


@pytest.mark.parametrize("n", [40, 41])
def test_ranks_are_disjoint_and_equal_length(n):
    ranks = [ResumableSampler(n, shuffle=True, seed=11, rank=r, world_size=2) for r in range(2)]
    orders = [_epoch(s, 1) for s in ranks]
    assert len(ranks[0]) == len(ranks[1]) == n // 2
    assert [len(o) for o in orders] == [n // 2, n // 2]
    assert not set(orders[0]) & set(orders[1])
    assert set(orders[0]) | set(orders[1]) <= set(range(n))
    assert len(set(orders[0])) == n // 2
    # the ranks interleave the single-process permutation
    full = _epoch(ResumableSampler(n, shuffle=True, seed=11), 1)
    assert orders[0] == full[0 : 2 * (n // 2) : 2]
    assert orders[1] == full[1 : 2 * (n // 2) : 2]


def test_bad_rank_raises():
    with pytest.raises(ValueError):
        ResumableSampler(10, shuffle=True, seed=0, rank=2, world_size=2)


@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2)])
@pytest.mark.parametrize("k", [0, 1, 7, 15])
def test_resume_yields_the_tail(rank, world, k):
    ref = ResumableSampler(30, shuffle=True, seed=5, rank=rank, world_size=world)
    full = _epoch(ref, 3)
    s = ResumableSampler(30, shuffle=True, seed=5, rank=rank, world_size=world)
    s.resume(3, k)
    assert len(s) == len(full)  # __len__ stays the full epoch length
    assert s.epoch == 3
    assert list(s) == full[k:]
    assert len(s) == len(full)


def test_resume_when_lightning_sets_the_epoch_again():
    full = _epoch(ResumableSampler(20, shuffle=True, seed=1), 2)
    s = ResumableSampler(20, shuffle=True, seed=1)
    s.resume(2, 6)
    s.set_epoch(2)
    assert list(s) == full[6:]


def test_skip_applies_once_and_only_to_its_epoch():
    ref = ResumableSampler(20, shuffle=True, seed=9)
    e2, e3 = _epoch(ref, 2), _epoch(ref, 3)

    s = ResumableSampler(20, shuffle=True, seed=9)
    s.resume(2, 5)
    assert list(s) == e2[5:]
    assert list(s) == e2  # second pass over the same epoch: no skip
    assert _epoch(s, 3) == e3

    s = ResumableSampler(20, shuffle=True, seed=9)
    s.resume(2, 5)
    assert _epoch(s, 3) == e3  # another epoch is not shortened
    assert _epoch(s, 2) == e2[5:]  # the pending skip belongs to epoch 2 only
    assert _epoch(s, 2) == e2


def test_token_dataset_is_deterministic_per_index():
    a = TokenPatternDataset(20, seq_len=12, vocab_size=50, seed=3)
    b = TokenPatternDataset(20, seq_len=12, vocab_size=50, seed=3)
    assert len(a) == 20
    for i in (0, 7, 19):
        x, y = a[i], b[i]
        assert set(x) == {"input_ids", "attention_mask", "labels"}
        for key in x:
            assert torch.equal(x[key], y[key])
    # order of access does not matter
    later_first = [b[i]["input_ids"] for i in reversed(range(20))][::-1]
    assert all(torch.equal(a[i]["input_ids"], later_first[i]) for i in range(20))
    # another seed gives other data
    c = TokenPatternDataset(20, seq_len=12, vocab_size=50, seed=4)
    assert any(not torch.equal(a[i]["input_ids"], c[i]["input_ids"]) for i in range(20))
    # and samples are not all the same
    assert len({tuple(a[i]["input_ids"].tolist()) for i in range(20)}) > 10


def test_token_sequences_are_arithmetic_mod_vocab():
    V, L = 37, 25
    ds = TokenPatternDataset(30, seq_len=L, vocab_size=V, seed=0)
    for i in range(len(ds)):
        s = ds[i]
        ids = s["input_ids"]
        assert ids.shape == (L,) and ids.dtype == torch.int64
        assert int(ids.min()) >= 0 and int(ids.max()) < V
        step = (int(ids[1]) - int(ids[0])) % V
        assert 1 <= step < 8
        for k in range(L):
            assert int(ids[k]) == (int(ids[0]) + step * k) % V
        assert torch.equal(s["labels"], ids)
        assert s["labels"].data_ptr() != ids.data_ptr()
        assert torch.equal(s["attention_mask"], torch.ones(L, dtype=ids.dtype))
