"""The checks training makes before decoding (check_sample) and the decode.short_video policy."""

from __future__ import annotations

import io
import json

import av
import numpy as np
import pytest

from vau.config.data import DecodeConfig
from vau.data.media.decode import SampleDecoder, check_sample, collate
from vau.data.shards.manifest import Sample
from vau.data.loading.stream import ShardLoader, ShardStream, Source
from vau.data.shards.writer import ShardWriter

CONV = [{"from": "human", "value": "<video>\nWhat happens?"}, {"from": "gpt", "value": "A man falls."}]


def tiny_video(frames: int) -> bytes:
    """A 16x16 H.264 mp4 of exactly ``frames`` frames."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as c:
        s = c.add_stream("libx264", rate=8)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        for i in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def sample(key: str, ann: dict, **members: bytes) -> dict:
    return {"__key__": key, "__url__": "u.tar", "json": json.dumps(ann).encode(), **members}


def test_short_video_reject_is_a_counted_bad_sample_with_one_line(tmp_path):
    w = ShardWriter(str(tmp_path / "s-%06d.tar"), maxcount=10)
    w.write(Sample("short", {"json": json.dumps({"caption": "x"}).encode(), "mp4": tiny_video(2)}))
    w.write(Sample("long", {"json": json.dumps({"caption": "y"}).encode(), "mp4": tiny_video(6)}))
    w.close()
    dec = SampleDecoder(DecodeConfig(frames=4, size=16), train=False)
    with pytest.raises(ValueError) as e:
        dec(sample("k", {"caption": "x"}, mp4=tiny_video(2)))
    msg = str(e.value)
    assert "2 frame(s), fewer than the 4" in msg and "decode.short_video=reject" in msg and "\n" not in msg
    assert dec.short_videos == 1
    s = ShardStream([Source((str(tmp_path / "s-000000.tar"),))], dec, collate, 2, train=False)
    batches = list(ShardLoader(s, lambda: 0, num_workers=0))
    assert [k for b in batches for k in b["key"]] == ["long"] and s.bad_samples == 1


def test_short_video_pad_repeats_frames_counts_and_warns_rate_limited(caplog):
    dec = SampleDecoder(DecodeConfig(frames=4, size=16, short_video="pad"), train=False)
    with caplog.at_level("WARNING", logger="vau.data"):
        outs = [dec(sample(f"k{i}", {"caption": "x"}, mp4=tiny_video(2))) for i in range(5)]
    assert outs[0]["video"].shape == (4, 3, 16, 16) and outs[0]["frame_indices"].tolist() == [0, 0, 1, 1]
    assert dec.short_videos == 5
    warned = [r.getMessage() for r in caplog.records if "decode.short_video=pad" in r.getMessage()]
    assert [m.split(" short")[0] for m in warned] == ["padded 1", "padded 2", "padded 4"]  # 1, 2, 4: not one per video
    long = dec(sample("ok", {"caption": "x"}, mp4=tiny_video(6)))
    assert long["num_frames"] == 6 and dec.short_videos == 5  # a long enough video is not short


def test_check_clip_probes_without_decoding_and_applies_the_policy(monkeypatch):
    import vau.data.media.video as video

    monkeypatch.setattr(video, "decode_clip", lambda *a, **k: pytest.fail("check_clip decoded frames"))
    dec = SampleDecoder(DecodeConfig(frames=3), train=False)
    dec.check_clip(sample("ok", {"caption": "x"}, mp4=tiny_video(3)))
    with pytest.raises(ValueError, match="decode.short_video=reject"):
        dec.check_clip(sample("s", {"caption": "x"}, mp4=tiny_video(1)))
    assert dec.short_videos == 1


def test_unknown_short_video_policy_is_refused():
    with pytest.raises(ValueError, match=r"decode.short_video='trim': expected one of reject, pad"):
        SampleDecoder(DecodeConfig(short_video="trim"), train=False)


def test_check_sample_schema_target_and_media_rules():
    s = sample("noconv", {"caption": "only a caption"}, png=b"")
    assert check_sample(s) == {"caption": "only a caption"}  # the schema alone accepts it
    with pytest.raises(ValueError) as e:
        check_sample(s, target="conversations")
    assert str(e.value) == "annotation has no conversations (data.target=conversations)"
    assert check_sample(s, target="caption", media=("mp4", "png"))["caption"] == "only a caption"
    with pytest.raises(ValueError, match="^no video or image member"):
        check_sample(sample("jsononly", {"conversations": CONV}), target="conversations", media=("mp4", "png"))
    with pytest.raises(ValueError, match=r"no nojson.json annotation"):
        check_sample({"__key__": "nojson", "mp4": b""})


def test_anomshield_training_rejects_a_sample_without_its_target_before_decoding(tmp_path):
    from vau.config import compose
    from vau.families.anomshield.data import AnomShieldDecoder, visual_tokens
    from vau.data.text.tokenizer import build_tokenizer

    cfg = compose(["experiment=tiny/anomshield_stage1", "model.llm.pretrained=null", "model.vision.pretrained=null", f"data.root={tmp_path}",
                   "data.target=conversations"])
    dec = AnomShieldDecoder(cfg, build_tokenizer(cfg.model.llm), visual_tokens(cfg), train=True)
    # The mp4 is not a video: a check made after decoding would fail on it instead.
    with pytest.raises(ValueError, match=r"^annotation has no conversations \(data.target=conversations\)$"):
        dec(sample("noconv", {"caption": "x"}, mp4=b"not a video"))
    with pytest.raises(ValueError, match="^no video or image member"):
        dec(sample("jsononly", {"conversations": CONV}))
    out = dec(sample("ok", {"conversations": CONV}, mp4=tiny_video(cfg.data.decode.frames)))
    assert out["pixel_values"].shape[0] == cfg.data.decode.frames
