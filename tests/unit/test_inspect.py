"""`vau shards inspect` counts as bad exactly what training would skip (target, pairing, short videos)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import raw_tar
from test_decode_rules import CONV, tiny_video  # tests/unit is on sys.path, as for eval_fakes

from vau.data.shards.inspect import inspect_shards


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(buf, format="png")
    return buf.getvalue()


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    """good, noconv (conversations deleted), ooo (its .json, then good2, then its .png), short (2 frames)."""
    full = json.dumps({"caption": "c", "conversations": CONV}).encode()
    png = _png()
    members = [("good.json", full), ("good.png", png),
               ("noconv.json", json.dumps({"caption": "c"}).encode()), ("noconv.png", png),
               ("ooo.json", full), ("good2.json", full), ("good2.png", png), ("ooo.png", png),
               ("short.json", full), ("short.mp4", tiny_video(2))]
    return raw_tar(tmp_path / "s-000000.tar", members)


@pytest.mark.parametrize("decode", [0, 10])  # probed only, or decoded in full: the same verdicts
def test_inspect_applies_the_training_rules(shard, decode):
    plain = inspect_shards(str(shard), decode=decode, frames=4, short_video="pad")
    # The schema alone: only the second run of ooo breaks pairing; the short video is padded.
    assert (plain.samples, plain.bad, plain.short_videos) == (5, 1, 1)
    assert "out-of-order member ooo.png" in plain.errors[0]

    r = inspect_shards(str(shard), decode=decode, frames=4, target="conversations")
    assert (r.samples, r.bad, r.short_videos) == (2, 4, 1)  # good, good2
    errors = "\n".join(r.errors)
    assert "noconv: ValueError: annotation has no conversations (data.target=conversations)" in errors
    for line in r.errors:  # the url, the key once, the reason
        key = line.split(": ")[1]
        assert line.count(f"{key}:") == 1, line
    assert "ooo: ValueError: no video or image member" in errors  # the JSON-only half
    assert "out-of-order member ooo.png" in errors  # the media-only half
    assert "short: ValueError: video has 2 frame(s)" in errors and "decode.short_video=reject" in errors
    assert r.members == {"json": 2, "png": 2} and r.kinds == {"caption": 2, "conversations": 2}


def test_cli_inspect_target_json_and_allow_pipe(shard, capsys):
    from vau.cli import main

    assert main(["shards", "inspect", str(shard), "--target", "conversations", "--frames", "4", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["samples"], report["bad"], report["short_videos"]) == (2, 4, 1)
    assert {"shards", "members", "kinds", "decoded", "sizes_json", "errors", "examples"} <= set(report)

    url = f"pipe:cat {shard}"
    assert main(["shards", "inspect", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and url in err and "--allow-pipe" in err
    assert main(["shards", "inspect", url, "--allow-pipe", "--frames", "2"]) == 1  # only ooo's second run is bad
    out = capsys.readouterr().out
    assert "samples:  5 good, 1 bad" in out
