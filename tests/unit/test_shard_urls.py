"""Shard URLs: pipe: (opt-in, read to the end, exit status checked), http(s), fsspec, refused schemes."""

from __future__ import annotations

import http.server
import importlib.util
import json
import threading
from pathlib import Path

import pytest

from vau.data.shards.manifest import Sample
from vau.data.shards.shardlist import PipeNotAllowed, expand_shards, shard_sizes
from vau.data.shards.tario import BadSample, iter_shard
from vau.data.shards.writer import ShardWriter


def write_set(folder: Path, name: str, shards: int, per_shard: int, payload: int = 30_000) -> list[Path]:
    """Caption shards whose samples carry ``payload`` bytes each: a shard spans many tarfile buffers."""
    folder.mkdir(parents=True, exist_ok=True)
    w = ShardWriter(str(folder / f"{name}-%06d.tar"), maxcount=per_shard)
    for i in range(shards * per_shard):
        w.write(Sample(f"{name}{i:04d}", {"json": json.dumps({"caption": f"c {i}"}).encode(),
                                          "bin": bytes([i % 256]) * payload}))
    w.close()
    return sorted(folder.glob(f"{name}-*.tar"))


def keys(items) -> list[str]:
    return [x["__key__"] for x in items if not isinstance(x, BadSample)]


def bads(items) -> list[BadSample]:
    return [x for x in items if isinstance(x, BadSample)]


# --- pipe: -------------------------------------------------------------------------------


def test_expand_shards_refuses_pipe_unless_allowed(tmp_path):
    url = f"pipe:cat {tmp_path}/s-000000.tar"
    with pytest.raises(PipeNotAllowed) as e:
        expand_shards(url)
    msg = str(e.value)
    assert url in msg and "data.allow_pipe=true" in msg and "\n" not in msg
    assert isinstance(e.value, ValueError)  # the CLI's one-line errors include ValueError
    assert expand_shards(url, allow_pipe=True) == [url]
    assert shard_sizes([url]) is None  # a command is not a path: no sizes.json lookup


def test_pipe_reads_every_sample_of_every_shard(tmp_path):
    shards = write_set(tmp_path, "p", shards=3, per_shard=4)
    urls = expand_shards("::".join(f"pipe:cat {s}" for s in shards), allow_pipe=True)
    items = [x for u in urls for x in iter_shard(u)]
    assert bads(items) == []  # the old reader crashed here ('Pipe' object has no attribute 'seek')
    assert keys(items) == [f"p{i:04d}" for i in range(12)]
    assert items[-1]["bin"] == bytes([11]) * 30_000


@pytest.mark.parametrize("cmd,good,reason", [
    ("exit 3", 0, "pipe command exited with status 3"),
    ("cat {s}; echo oops >&2; exit 4", 4, "pipe command exited with status 4: oops"),
    ("head -c 70000 {s}; exit 1", 2, "pipe command exited with status 1"),  # cut inside the third sample
])
def test_failing_pipe_command_is_one_bad_sample(tmp_path, cmd, good, reason):
    (shard,) = write_set(tmp_path, "f", shards=1, per_shard=4)
    items = list(iter_shard("pipe:" + cmd.format(s=shard)))
    assert keys(items) == [f"f{i:04d}" for i in range(good)]
    (bad,) = bads(items)
    assert bad.reason.startswith(reason) and "\n" not in bad.reason
    if good == 2:
        assert bad.key == "f0002"  # the sample in progress is the lost one


def _pipe_config(tmp_path: Path, *extra: str):
    from vau.config import compose

    train = write_set(tmp_path / "train", "t", shards=2, per_shard=3, payload=100)
    val = write_set(tmp_path / "val", "v", shards=3, per_shard=3, payload=100)
    specs = [f"data.train=[{{shards: \"{'::'.join(f'pipe:cat {s}' for s in train)}\"}}]",
             f"data.val=[{{shards: \"{'::'.join(f'pipe:cat {s}' for s in val)}\"}}]"]
    return compose(["experiment=tiny/lm_text", f"data.root={tmp_path}", *specs, *extra]), train




def test_datamodule_over_pipes_needs_allow_pipe_then_reads_every_shard(tmp_path, deadline):
    from vau.families import get_family

    cfg, train = _pipe_config(tmp_path)
    dm = get_family(cfg.model.family).build_datamodule(cfg)
    with pytest.raises(PipeNotAllowed, match=rf"pipe:cat {train[0]}.*data.allow_pipe=true"):
        dm.check()

    cfg, _ = _pipe_config(tmp_path, "data.allow_pipe=true", "data.num_workers=2")
    dm = get_family(cfg.model.family).build_datamodule(cfg)
    dm.check()
    val = dm.val_dataloader()
    assert sorted(k for b in val for k in b["key"]) == [f"v{i:04d}" for i in range(9)]
    assert val.dataset.bad_samples == 0
    loader = dm.train_dataloader()  # no sizes for pipes: endless, resampled
    it = iter(loader)
    seen = [k for _ in range(8) for k in next(it)["key"]]  # 32 samples: each worker past several shard ends
    assert set(seen) <= {f"t{i:04d}" for i in range(6)} and len(seen) == 32
    assert loader.dataset.bad_samples == 0
    del it


def test_vau_train_refuses_pipe_in_one_line(tmp_path, capsys):
    from vau.cli import main

    cfg, train = _pipe_config(tmp_path)
    run = tmp_path / "run"
    rc = main(["train", "experiment=tiny/lm_text", f"data.root={tmp_path}", f"run.dir={run}", "logger=none",
               f"data.train=[{{shards: \"pipe:cat {train[0]}\"}}]"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and f"pipe:cat {train[0]}" in err and "data.allow_pipe" in err, err
    assert not run.exists()  # refused before the run dir is touched


# --- http(s) -----------------------------------------------------------------------------


@pytest.fixture
def http_dir(tmp_path):
    """Serves tmp_path/www on 127.0.0.1; ``/cut/<name>`` sends the first half of ``<name>`` under its full length."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def do_GET(self):
            if not self.path.startswith("/cut/"):
                return super().do_GET()
            data = (root / self.path[len("/cut/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])  # then the connection closes: a body cut short
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_shards_read_whole_404_and_cut_bodies_are_bad_samples(http_dir):
    root, base = http_dir
    write_set(root, "h", shards=2, per_shard=4)
    urls = expand_shards(f"{base}/h-{{000000..000001}}.tar")
    assert urls == [f"{base}/h-000000.tar", f"{base}/h-000001.tar"] and shard_sizes(urls) is None
    items = [x for u in urls for x in iter_shard(u)]
    assert keys(items) == [f"h{i:04d}" for i in range(8)] and bads(items) == []

    (missing,) = list(iter_shard(f"{base}/nope.tar"))
    assert isinstance(missing, BadSample) and missing.reason.startswith("cannot open shard: HTTP Error 404")

    cut = list(iter_shard(f"{base}/cut/h-000000.tar"))  # 4 samples of ~30 kB: cut inside the third
    assert keys(cut) == ["h0000", "h0001"]
    (bad,) = bads(cut)
    assert bad.key == "h0002" and "truncated" in bad.reason


# --- fsspec and refused schemes -----------------------------------------------------------


def test_fsspec_urls_are_read_through_fsspec(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    (shard,) = write_set(tmp_path, "m", shards=1, per_shard=3)
    with fsspec.open("memory://vau-test/m-000000.tar", "wb") as f:
        f.write(shard.read_bytes())
    for url in ("memory://vau-test/m-000000.tar", shard.as_uri()):
        assert expand_shards(url) == [url]
        assert keys(iter_shard(url)) == ["m0000", "m0001", "m0002"]
    (missing,) = list(iter_shard("memory://vau-test/none.tar"))
    assert isinstance(missing, BadSample) and missing.reason.startswith("cannot open shard")


def test_unknown_scheme_is_a_one_line_error():
    with pytest.raises(ValueError) as e:
        expand_shards("foo://bucket/s-000000.tar")
    assert "unknown URL scheme foo://" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed here: s3:// is readable")
def test_s3_without_s3fs_points_to_pipe():
    with pytest.raises(ValueError) as e:
        expand_shards("s3://bucket/s-000000.tar")
    msg = str(e.value)
    assert "pipe:aws s3 cp s3://bucket/s-000000.tar -" in msg and "data.allow_pipe=true" in msg and "\n" not in msg
