"""Bad data is bounded: one-line DataError past the limits, rate-limited bad-sample logs."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from vau.config.data import DecodeConfig
from vau.data.media.decode import SampleDecoder, collate
from vau.data.shards.manifest import Sample
from vau.data.loading.stream import META, ShardLoader, ShardStream, Source
from vau.data.shards.writer import ShardWriter
from vau.errors import ConfigError, DataError


pytestmark = pytest.mark.usefixtures("deadline")  # a stream that never ends fails instead of hanging


def write_shards(folder: Path, name: str, n: int, per_shard: int, bad_every: int = 0, bad_from: int = 0) -> list[str]:
    """Caption-only shards; sample i >= bad_from with i % bad_every == 0 has broken JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    w = ShardWriter(str(folder / f"{name}-%06d.tar"), maxcount=per_shard)
    for i in range(n):
        bad = bad_every and i >= bad_from and i % bad_every == 0
        data = b"{broken" if bad else json.dumps({"caption": f"caption {i}"}).encode()
        w.write(Sample(f"{name}{i:04d}", {"json": data}))
    w.close()
    return sorted(str(p) for p in folder.glob(f"{name}-*.tar"))


def corrupt_shards(folder: Path, name: str) -> list[str]:
    """A zero-byte file, a non-tar file and a tar cut inside its only member."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}-000000.tar").write_bytes(b"")
    (folder / f"{name}-000001.tar").write_bytes(b"not a tar " * 300)
    cut = write_shards(folder / "cut", name, 1, 1)[0]
    data = Path(cut).read_bytes()
    (folder / f"{name}-000002.tar").write_bytes(data[:520])  # inside the json member's data
    return sorted(str(p) for p in folder.glob(f"{name}-*.tar"))


def empty_shards(folder: Path, name: str, n: int = 3) -> list[str]:
    """Well-formed tar files without a single member."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tarfile.open(folder / f"{name}-{i:06d}.tar", "w").close()
    return sorted(str(p) for p in folder.glob(f"{name}-*.tar"))


def stream(sources, *, train=True, **kw) -> ShardStream:
    sources = [Source(tuple(s)) if isinstance(s, list) else s for s in sources]
    kw.setdefault("epoch_batches", 50 if train else None)
    return ShardStream(sources, SampleDecoder(DecodeConfig(video=False), train=train), collate, 2,
                       train=train, seed=1, shuffle_buffer=4, shuffle_initial=2, **kw)


def one_line_error(s: ShardStream, num_workers: int) -> str:
    with pytest.raises(DataError) as e:
        list(ShardLoader(s, lambda: 0, num_workers=num_workers))
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg and "worker process" not in msg, msg
    return msg


@pytest.mark.parametrize("num_workers", [0, 2])
def test_all_corrupt_shards_fail_fast_naming_a_shard(tmp_path, num_workers):
    urls = corrupt_shards(tmp_path, "c")
    msg = one_line_error(stream([urls]), num_workers)
    assert "no good sample in the first 100 reads" in msg and "data.first_good_within=100" in msg
    assert any(u in msg for u in urls), msg  # the latest bad sample's shard and its reason
    assert "truncated tar" in msg or "not a tar" in msg or "empty file" in msg or "invalid header" in msg


@pytest.mark.parametrize("num_workers", [0, 2])
def test_zero_member_shards_fail_instead_of_spinning(tmp_path, num_workers):
    urls = empty_shards(tmp_path, "e")
    msg = one_line_error(stream([urls]), num_workers)
    assert msg.startswith("no samples in 3 shard(s) of source ") and any(u in msg for u in urls), msg


def test_an_empty_source_in_a_mix_fails_even_when_another_is_good(tmp_path):
    # Mixing asks each source for its next sample: an empty one would block the whole stream.
    good = Source(tuple(write_shards(tmp_path / "g", "g", 20, 5)), name="good")
    empty = Source(tuple(empty_shards(tmp_path / "e", "e", 2)), name="empty-spec")
    msg = one_line_error(stream([good, empty]), 0)
    assert msg.startswith("no samples in 2 shard(s) of source empty-spec (e.g. "), msg


def test_bad_fraction_below_the_limit_reads_on_and_counts(tmp_path):
    urls = write_shards(tmp_path, "q", 40, 5, bad_every=4)  # a quarter bad
    s = stream([urls], max_bad_fraction=0.5, bad_window=20, epoch_batches=60)
    batches = list(ShardLoader(s, lambda: 0, num_workers=0))
    keys = [k for b in batches for k in b["key"]]
    assert len(batches) == 60 and not any(int(k[1:]) % 4 == 0 for k in keys)
    # Every read is either in a batch or counted bad (the epoch ends on a full batch).
    assert s.bad_samples == batches[-1][META]["cursor"] - len(keys) > 0


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_fraction_above_the_limit_fails(tmp_path, num_workers):
    # Three bad samples in four; first_good_within is out of reach: only the fraction limit can trip.
    w = ShardWriter(str(tmp_path / "m-%06d.tar"), maxcount=40)
    for i in range(40):
        data = json.dumps({"caption": f"c {i}"}).encode() if i % 4 == 0 else b"{broken"
        w.write(Sample(f"m{i:04d}", {"json": data}))
    w.close()
    urls = sorted(str(p) for p in tmp_path.glob("m-*.tar"))
    msg = one_line_error(stream([urls], max_bad_fraction=0.5, bad_window=40, first_good_within=1000), num_workers)
    assert "of the last 40 reads of worker" in msg and "data.max_bad_fraction=0.5" in msg, msg
    assert f" in {urls[0]}: " in msg, msg  # the latest bad sample: key, shard, reason
    # The same data goes through when the limit allows it (1.0 = never fail).
    s = stream([urls], max_bad_fraction=1.0, bad_window=40, first_good_within=1000, epoch_batches=5)
    assert len(list(ShardLoader(s, lambda: 0, num_workers=num_workers))) == 5


def test_bad_sample_log_lines_are_rate_limited(tmp_path, caplog):
    urls = write_shards(tmp_path, "l", 501, 501, bad_every=1, bad_from=1)  # 1 good, then 500 bad
    s = stream([urls], train=False, max_bad_fraction=1.0)
    with caplog.at_level("WARNING", logger="vau.data"):
        batches = list(ShardLoader(s, lambda: 0, num_workers=0))
    assert [b["key"] for b in batches] == [["l0000"]] and s.bad_samples == 500
    lines = [r.getMessage() for r in caplog.records if r.name == "vau.data"]
    assert len(lines) == 10 + 5, lines  # 10 in full, then at 16, 32, 64, 128, 256
    assert lines[0].startswith("skipped bad sample l0001 in ")
    assert lines[-1].startswith("skipped 256 bad samples so far in worker 0 this pass; latest: l0256 in ")


@pytest.mark.parametrize("kw,key", [
    ("data.max_bad_fraction=0", "data.max_bad_fraction=0.0"),
    ("data.max_bad_fraction=1.5", "data.max_bad_fraction=1.5"),
    ("data.bad_window=0", "data.bad_window=0"),
    ("data.first_good_within=-1", "data.first_good_within=-1"),
])
def test_bad_limit_values_are_refused_in_one_line_when_the_config_loads(kw, key):
    from vau.config import compose

    # Before any model or data is built: the run config's own check.
    with pytest.raises(ConfigError, match=f"^{key}: expected"):
        compose(["experiment=tiny/lm_text", kw])


def test_limit_keys_compose_and_reach_the_streams(tmp_path):
    from vau.config import compose
    from vau.families import get_family

    root = tmp_path / "data"
    for kind in ("images", "videos"):
        for split in ("train", "val"):
            write_shards(root / "synth" / "shards", f"{kind}-{split}", 6, 6)
    defaults = compose(["experiment=tiny/lm_text", f"data.root={root}"]).data
    assert (defaults.max_bad_fraction, defaults.bad_window, defaults.first_good_within) == (0.5, 1000, 100)
    cfg = compose(["experiment=tiny/lm_text", f"data.root={root}", "data.max_bad_fraction=0.25",
                   "data.bad_window=64", "data.first_good_within=7"])
    dm = get_family(cfg.model.family).build_datamodule(cfg)
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        ds = loader.dataset
        assert (ds.max_bad_fraction, ds.bad_window, ds.first_good_within) == (0.25, 64, 7)
    with pytest.raises(ConfigError, match="bad_window"):
        compose(["experiment=tiny/lm_text", "data.bad_window=many"])
    with pytest.raises(ConfigError, match=r"^data.max_bad_fraction=2.0: expected a fraction in \(0, 1\]"):
        compose(["experiment=tiny/lm_text", f"data.root={root}", "data.max_bad_fraction=2"])


def test_train_on_all_bad_shards_exits_2_with_one_line(tmp_path, capsys):
    from vau.cli import main

    shards = tmp_path / "data" / "synth" / "shards"
    empty_shards(shards, "images-train", 2)
    corrupt_shards(shards, "videos-train")
    corrupt_shards(shards, "images-val")
    corrupt_shards(shards, "videos-val")
    run = tmp_path / "run"
    rc = main(["train", "experiment=tiny/lm_text", f"data.root={tmp_path / 'data'}", f"run.dir={run}", "logger=none",
               "trainer.max_steps=3", "trainer.progress_bar=none", "data.num_workers=2"])
    err = capsys.readouterr().err
    assert rc == 2, err
    mine = [line for line in err.splitlines() if line.startswith("vau train:")]
    assert len(mine) == 1 and "Traceback" not in err, err
    assert str(shards) in mine[0] and ("no samples in 2 shard(s)" in mine[0] or "data.first_good_within" in mine[0])
    assert not (run / "export").exists()
