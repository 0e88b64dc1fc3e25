"""`vau synth`: the synthetic data's media, text and events agree, checked from decoded output.

Pixel and audio checks decode the written mp4/png with the platform's readers and look for the
annotated event where the annotation says it is, using only the annotation and the named
colour palette (not the simulator's internal state).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from vau.data import synth
from vau.data.shards.annotation import validate_annotation
from vau.data.media.audio import decode_audio
from vau.data.media.image import load_image
from vau.data.media.video import decode_frames, probe

REPO = Path(__file__).resolve().parents[2]
SEED = 0
VIDEOS, IMAGES = 6, 4
EVENT_CLASSES = ("collision", "fire", "fall", "sudden_run")
PER_CLASS = 2  # forced-class videos per event class for the pixel and audio checks
ALL_TASKS = {"description", "cause", "result", "detection", "classification", "timestamp"}


# ---------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    synth.generate(root, seed=SEED, videos=VIDEOS, images=IMAGES, progress=False)
    return root


def _shard_members(shard_dir: Path, set_name: str) -> tuple[list[Path], dict[str, dict[str, bytes]]]:
    """Shard files of a set and ``{key: {ext: bytes}}`` read back with tarfile."""
    shards = sorted(shard_dir.glob(f"{set_name}-*.tar"))
    samples: dict[str, dict[str, bytes]] = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return shards, samples


def _manifest(root: Path, set_name: str) -> list[dict]:
    return [json.loads(line) for line in (root / "synth" / f"{set_name}.jsonl").read_text().splitlines()]


def _all_samples(root: Path, kind: str) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    for split in ("train", "val"):
        samples.update(_shard_members(root / "synth" / "shards", f"{kind}-{split}")[1])
    return samples


@pytest.fixture(scope="module")
def event_videos() -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """(annotation, decoded frames [T,H,W,3], decoded audio) of forced-class videos."""
    out = []
    for kind in (*EVENT_CLASSES, synth.NORMAL):
        for index in range(PER_CLASS):
            sample = synth.make_video(SEED, 100 + index, kind=kind)
            n, _, _ = probe(sample.data)
            frames = decode_frames(sample.data, range(n)).numpy().astype(np.int32)
            out.append((sample.annotation, frames, decode_audio(sample.data, synth.SAMPLE_RATE).numpy()))
    return out


def _of_class(videos, kind: str):
    got = [v for v in videos if v[0]["anomaly"]["classes"] == ([kind] if kind != synth.NORMAL else [])]
    assert len(got) == PER_CLASS
    return got


def _frame_times(ann: dict) -> np.ndarray:
    return np.arange(ann["meta"]["num_frames"]) / ann["meta"]["fps"]


def _colour_mask(frames: np.ndarray, colour_name: str) -> np.ndarray:
    """Pixels close to a named palette colour (compression moves colours by far less than 60)."""
    rgb = np.array(synth.COLOURS[colour_name])
    return np.linalg.norm(frames - rgb, axis=-1) < 60


def _actor_masks(ann: dict, frames: np.ndarray, keyword_index: int) -> np.ndarray:
    """Masks of the shape named by ``anomaly.keywords[i]`` (e.g. ``"red circle"``)."""
    colour = ann["anomaly"]["keywords"][keyword_index].split()[0]
    masks = _colour_mask(frames, colour)
    assert masks.reshape(len(masks), -1).sum(1).min() > 10, f"{colour} shape not visible on every frame"
    return masks


def _centroids(masks: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0 : masks.shape[1], 0 : masks.shape[2]]
    n = masks.sum((1, 2))
    return np.stack([(masks * xs).sum((1, 2)) / n, (masks * ys).sum((1, 2)) / n], 1)


def _background_between(frame: np.ndarray, p: np.ndarray, q: np.ndarray, background: np.ndarray) -> bool:
    """Whether background shows on the straight line between two points (shapes not touching)."""
    points = p + np.linspace(0.0, 1.0, 64)[:, None] * (q - p)
    cols, rows = np.clip(points.round().astype(int), 0, np.array(frame.shape[1::-1]) - 1).T
    return bool((np.linalg.norm(frame[rows, cols] - background, axis=-1) < 30).any())


def _tone_amplitude(audio: np.ndarray, freq: float, rate: int, window: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude of ``freq`` in consecutive windows (a single-bin DFT), and the windows' centres (s)."""
    n = int(window * rate)
    count = len(audio) // n
    chunks = audio[: count * n].reshape(count, n).astype(np.float64)
    basis = np.exp(-2j * np.pi * freq * np.arange(n) / rate)
    return 2 * np.abs(chunks @ basis) / n, (np.arange(count) + 0.5) * window


# ---------------------------------------------------------------------------- written data set


def test_shards_hold_every_sample(data_root):
    shard_dir = data_root / "synth" / "shards"
    for kind, ext in (("videos", "mp4"), ("images", "png")):
        for split in ("train", "val"):
            entries = _manifest(data_root, f"{kind}-{split}")
            shards, samples = _shard_members(shard_dir, f"{kind}-{split}")
            assert entries, f"{kind}-{split} is empty"
            assert sorted(samples) == sorted(e["key"] for e in entries)
            for entry in entries:
                assert set(samples[entry["key"]]) == {ext, "json"}
                assert samples[entry["key"]][ext] == (data_root / "synth" / entry[kind[:-1]]).read_bytes()
                assert json.loads(samples[entry["key"]]["json"]) == entry["annotation"]
                assert entry["annotation"]["meta"]["split"] == split
            if split == "train":
                assert len(shards) >= 2, f"{kind}-train needs several shards, got {len(shards)}"
    sizes = json.loads((shard_dir / "sizes.json").read_text())
    assert sum(sizes.values()) == VIDEOS + IMAGES


def test_split_and_class_mix(data_root):
    assert len(_manifest(data_root, "videos-val")) == round(VIDEOS * 0.25)
    assert synth.val_indices(32, 0.25) == frozenset({2, 6, 10, 14, 18, 22, 26, 30})
    classes = [(e["annotation"]["anomaly"]["classes"] or [synth.NORMAL])[0]
               for split in ("train", "val") for e in _manifest(data_root, f"videos-{split}")]
    # Six videos are one block of the class cycle: two normal, one of each event class.
    assert sorted(classes) == sorted([synth.NORMAL, synth.NORMAL, *EVENT_CLASSES])


def test_video_annotations_complete_and_consistent(data_root):
    for members in _all_samples(data_root, "videos").values():
        ann = validate_annotation(json.loads(members["json"]))
        assert {"caption", "captions", "scene", "anomaly", "key_sentences", "conversations", "query"} <= set(ann)
        assert len(ann["captions"]) == 2 and ann["captions"][0] == ann["caption"]
        assert 2 <= len(ann["key_sentences"]) <= 4
        meta = ann["meta"]
        assert meta["source"] == "synth" and meta["seed"] == SEED and meta["fps"] == synth.FPS
        assert 2.0 <= meta["duration"] <= 8.0 and meta["num_frames"] == meta["duration"] * meta["fps"]
        turns = ann["conversations"]
        assert turns[0]["from"] == "human" and turns[0]["value"].startswith("<video>\n")
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        answers = {t["task"]: t["value"] for t in turns if t["from"] == "gpt"}
        anomaly = ann["anomaly"]
        if anomaly["abnormal"]:
            (start, end), = anomaly["segments"]
            assert 0 < start < end < meta["duration"]
            assert set(answers) == ALL_TASKS
            assert answers["detection"] == "Yes."
            assert answers["timestamp"] == f"From {start:.1f} s to {end:.1f} s."
            assert anomaly["classes"][0] in synth.EVENTS and anomaly["keywords"] and anomaly["cause"]
        else:
            assert anomaly["classes"] == anomaly["segments"] == anomaly["keywords"] == []
            assert answers["detection"] == "No." and "timestamp" not in answers


def test_question_order_varies_so_every_task_is_asked_first(data_root):
    # `vau infer` asks each question as the first turn; a fixed order would only ever train detection there.
    firsts = {json.loads(m["json"])["conversations"][0]["task"] for m in _all_samples(data_root, "videos").values()}
    assert len(firsts) >= 3, firsts
    again = synth.make_video(SEED, 3).annotation["conversations"]
    assert again == synth.make_video(SEED, 3).annotation["conversations"]  # the order is seeded


def test_videos_decode_with_the_annotated_geometry(data_root):
    for members in _all_samples(data_root, "videos").values():
        meta = json.loads(members["json"])["meta"]
        n, fps, size = probe(members["mp4"])
        assert (n, fps, size) == (meta["num_frames"], 8.0, (64, 64))
        assert decode_frames(members["mp4"], [0, n - 1]).shape == (2, 64, 64, 3)
        audio = decode_audio(members["mp4"], synth.SAMPLE_RATE)
        assert abs(len(audio) / synth.SAMPLE_RATE - meta["duration"]) < 0.1


def test_images_show_the_captioned_shapes(data_root):
    for key, members in _all_samples(data_root, "images").items():
        ann = validate_annotation(json.loads(members["json"]))
        assert ann["conversations"][0]["value"] == "<image>\nDescribe the image briefly."
        assert ann["conversations"][1]["value"] == ann["caption"] == ann["captions"][0]
        image = load_image(members["png"]).numpy().astype(np.int32)
        assert image.shape == (64, 64, 3)
        named = [c for c in synth.COLOURS if f" {c} " in f" {ann['caption'].lower()} "]
        assert len(named) >= 2
        for colour in named:
            assert _colour_mask(image, colour).sum() >= 20, f"{key}: no {colour} shape in the image"
        for colour in set(synth.COLOURS) - set(named):
            assert _colour_mask(image, colour).sum() == 0, f"{key}: unnamed {colour} shape in the image"


# ---------------------------------------------------------------------------- events in the media


def test_audio_tone_exactly_in_the_anomaly_span(event_videos):
    for ann, _, audio in event_videos:
        amp, centre = _tone_amplitude(audio, synth.TONE_HZ, synth.SAMPLE_RATE)
        segments = ann["anomaly"]["segments"]
        if not segments:
            assert amp.max() < 0.02, "normal video has a tone"
            continue
        (start, end), = segments
        inside = (centre > start + 0.1) & (centre < end - 0.1)
        outside = (centre < start - 0.1) | (centre > end + 0.1)
        assert amp[inside].min() > 0.15, f"tone too weak in {segments}"
        assert amp[outside].max() < 0.02, f"tone outside {segments}"


def test_fire_visible_only_in_the_span(event_videos):
    for ann, frames, _ in _of_class(event_videos, "fire"):
        r, g, b = frames[..., 0], frames[..., 1], frames[..., 2]
        orange = ((r > 200) & (g > 50) & (g < 200) & (b < 90)).sum((1, 2))
        (start, end), = ann["anomaly"]["segments"]
        t = _frame_times(ann)
        inside = (t >= start) & (t < end)
        assert orange[inside].min() >= 8, orange
        assert orange[~inside].max() <= 2, orange
        assert len(set(orange[inside].tolist())) > 1, "the fire does not flicker"


def test_collision_shapes_meet_and_stop_in_the_span(event_videos):
    for ann, frames, _ in _of_class(event_videos, "collision"):
        background = np.array(next(rgb for name, rgb in synth.BACKGROUNDS.items() if f" {name} " in ann["scene"]))
        a, b = _actor_masks(ann, frames, 1), _actor_masks(ann, frames, 2)
        ca, cb = _centroids(a), _centroids(b)
        (start, end), = ann["anomaly"]["segments"]
        t = _frame_times(ann)
        apart = [_background_between(frames[i], ca[i], cb[i], background) for i in range(len(t))]
        inside = np.flatnonzero((t >= start) & (t <= end))
        assert not any(apart[i] for i in inside), f"not in contact during {start}-{end}: {apart}"
        # Centroid distances, not background on the line, since a third shape may pass in between.
        distance = np.hypot(*(ca - cb).T)
        rebound = min(round((end + 0.5) * ann["meta"]["fps"]), len(t) - 1)
        assert distance[0] > distance[inside].max() + 4, "the shapes should start apart"
        assert distance[rebound] > distance[inside].max() + 3, "no rebound after the collision"
        for c in (ca, cb):
            assert np.abs(c[inside] - c[inside[0]]).max() < 0.75, "shapes keep moving while in contact"


def test_fall_drops_to_the_bottom_in_the_span(event_videos):
    for ann, frames, _ in _of_class(event_videos, "fall"):
        y = _centroids(_actor_masks(ann, frames, 1))[:, 1]
        (start, end), = ann["anomaly"]["segments"]
        t = _frame_times(ann)
        before, falling, after = t < start, (t >= start) & (t <= end), t >= end
        assert y[before].max() < 32, "the shape should start in the upper half"
        assert y[after].min() > 64 - 10, "the shape should end at the bottom"
        assert np.ptp(y[after]) < 0.75, "the shape should lie still after the fall"
        assert np.all(np.diff(y[falling]) > -0.5), "the fall should go down only"
        assert y[after][0] - y[before][-1] >= 25
        # Chroma subsampling moves a colour mask's centroid by up to ~2 px as the shape slides sideways.
        assert np.ptp(y[before]) < 3.0, "before the fall it moves sideways only"


def test_sudden_run_is_much_faster_in_the_span(event_videos):
    for ann, frames, _ in _of_class(event_videos, "sudden_run"):
        c = _centroids(_actor_masks(ann, frames, 1))
        step = np.hypot(*np.diff(c, axis=0).T)  # step i goes from frame i to i + 1
        (start, end), = ann["anomaly"]["segments"]
        t = _frame_times(ann)
        inside = (t[:-1] >= start) & (t[1:] <= end)
        assert step[inside].mean() > 3 * step[~inside].mean(), step


# ---------------------------------------------------------------------------- determinism


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(data_root, tmp_path):
    synth.generate(tmp_path, seed=SEED, videos=VIDEOS, images=IMAGES, progress=False)
    assert _tree(tmp_path / "synth") == _tree(data_root / "synth")


def test_other_seed_gives_other_data(data_root, tmp_path):
    synth.generate(tmp_path, seed=SEED + 1, videos=VIDEOS, images=IMAGES, progress=False)
    ours, theirs = _tree(data_root / "synth"), _tree(tmp_path / "synth")
    assert ours.keys() == theirs.keys()
    media = [name for name in ours if name.endswith((".mp4", ".png"))]
    assert all(ours[name] != theirs[name] for name in media)
    def captions(root: Path) -> set[str]:
        return {e["annotation"]["caption"] for e in _manifest(root, "videos-train")}

    assert captions(data_root) != captions(tmp_path)


def test_sample_does_not_depend_on_the_set_size(data_root):
    alone = synth.make_video(SEED, 3)
    assert alone.data == (data_root / "synth" / "raw" / "videos" / f"{alone.key}.mp4").read_bytes()
    image = synth.make_image(SEED, 2)
    assert image.data == (data_root / "synth" / "raw" / "images" / f"{image.key}.png").read_bytes()


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="val-fraction"):
        synth.generate(tmp_path, val_fraction=1.0)
    with pytest.raises(KeyError, match="valid: normal"):
        synth.make_video(SEED, 0, kind="explosion")


# ---------------------------------------------------------------------------- command line


def _vau(*args: str, env_data: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VAU_DATA"}
    if env_data is not None:
        env["VAU_DATA"] = env_data
    return subprocess.run([sys.executable, "-m", "vau", "synth", *args], check=False, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_refuses_and_overwrites(tmp_path):
    out = tmp_path / "data"
    first = _vau("--out", str(out), "--videos", "4", "--images", "2")
    assert first.returncode == 0, first.stderr
    shard_dir = out / "synth" / "shards"
    assert (shard_dir / "videos-train-000000.tar").is_file() and (shard_dir / "images-val-000000.tar").is_file()
    assert "videos-train" in first.stdout and str(shard_dir) in first.stdout

    mtimes = {p: p.stat().st_mtime_ns for p in shard_dir.glob("*.tar")}
    same = _vau("--out", str(out), "--videos", "4", "--images", "2")
    assert same.returncode == 0 and "up to date" in same.stdout  # same settings: nothing to redo
    assert {p: p.stat().st_mtime_ns for p in shard_dir.glob("*.tar")} == mtimes

    again = _vau("--out", str(out), "--videos", "5", "--images", "2")
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vau synth:") and "--overwrite" in lines[0]

    # Fewer samples with --overwrite: no shard of the old, larger set survives.
    smaller = _vau("--out", str(out), "--videos", "2", "--images", "0", "--overwrite")
    assert smaller.returncode == 0, smaller.stderr
    assert sorted(p.name for p in shard_dir.glob("*.tar")) == ["videos-train-000000.tar", "videos-val-000000.tar"]


def test_cli_default_out_is_vau_data(tmp_path):
    proc = _vau("--videos", "2", "--images", "1", env_data=str(tmp_path / "root"))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "root" / "synth" / "shards").glob("*.tar")) == [
        "images-train-000000.tar", "videos-train-000000.tar", "videos-val-000000.tar"]


@pytest.mark.parametrize("kind", ["collision", "fall", "sudden_run"])
def test_each_anomaly_leaves_a_mark_a_still_frame_shows(kind):
    # Sparks while the shapes stand in contact, dust after the landing, a trail while running:
    # drawn only around the event, never counted as a shape of the scene.
    from vau.data.synth.events import DUST_RGB, SPARK_RGB, TRAIL_RGB
    from vau.data.synth.render import render_frame

    for index in range(3):
        scene = synth.make_video(SEED, index, kind=kind).scene
        start, end = scene.event.start, scene.event.end
        effects = [a for a in scene.actors if a.shape not in synth.scene.SHAPES]
        assert effects and all(a not in scene.shapes for a in effects)
        rgb, window = {"collision": (SPARK_RGB, (start, end + 1e-9)), "fall": (DUST_RGB, (end, end + 1.5)),
                       # the trail's first frame lies under the shape, which has not moved off yet
                       "sudden_run": (TRAIL_RGB, (start + 1.5 / synth.scene.FPS, end))}[kind]
        for i, t in enumerate(scene.times):
            marked = int((render_frame(scene, i) == rgb).all(-1).sum())
            if kind == "sudden_run" and start <= t < window[0]:
                continue
            assert (marked > 4) == (window[0] <= t < window[1]), (kind, index, t, marked)
