"""ECVA annotation sheet (``.xlsx`` or ``.csv``) -> vau samples, one per row (video).

Columns (the header row; matched ignoring case and whitespace, by prefix, so the Chinese
remarks and the double space in ``X2 -  result`` do not matter):

* ``video_id``: ``0001`` -> key, ``meta.id``, video ``<video_id>.mp4``
* ``X1 (5-1（总结其他类))``: ``[Robbery, 5]``, type and score -> ``anomaly.classes``,
  ``anomaly.score``
* ``X2 - reason（导致异常发生的原因）``: text -> ``anomaly.cause``
* ``X2 -  result （异常事件导致的结果）``: text -> ``anomaly.effect``
* ``X3 - moment``: ``[0052,0114][0118,0144]``, mmss spans -> ``anomaly.segments``
  ``[[52, 74], [78, 104]]`` seconds
* ``X3 - description``: ``[text][text]``, one per moment -> ``anomaly.description``
  (the parts joined by a space; a count other than the moments' is accepted)
* ``X4 - key sentences ...``: ``["Three mask thieves","stealing property"]`` ->
  ``key_sentences``
* ``Annotator`` (the only optional column): name -> ``meta.annotator``

Read ``video_id`` as text: an id typed as a number in Excel has lost its leading zeros
(``1`` instead of ``0001``) and gives the key ``1``.

Every row is an anomalous video (``anomaly.abnormal`` is true). The key sentences cell may
use single or curly quotes. An empty moment cell gives no ``segments``; empty text cells
give no field.

Conversations are built from the text with fixed questions, one QA pair per non-empty
task, in this order (the first question starts with ``<video>\\n``; each pair is tagged
with its task):

* ``description``: "What anomaly happens in this video? Describe it in detail." ->
  the description
* ``cause``: "What caused the anomaly in this video?" -> the X2 reason
* ``result``: "What is the result of the anomaly in this video?" -> the X2 result

Rows with every cell empty are ignored; rows with an empty ``video_id``, an X1 cell without
a type or with a non-numeric score, an unparseable or empty-length moment span, or key
sentences that are not a list of strings are skipped with the reason.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vau.data.convert.common import (
    Item,
    Record,
    bracketed_texts,
    guarded,
    id_text,
    media_path,
    parse_mmss_spans,
    qa_turns,
    with_video_ext,
)

QUESTIONS = {
    "description": "What anomaly happens in this video? Describe it in detail.",
    "cause": "What caused the anomaly in this video?",
    "result": "What is the result of the anomaly in this video?",
}
"""Fixed question per QA task, in conversation order."""


@dataclass(frozen=True)
class Column:
    """A sheet column we read: our field name and the header prefix that identifies it."""

    field: str
    prefix: str
    required: bool = True


COLUMNS = (
    Column("video_id", "video_id"),
    Column("type_score", "X1"),
    Column("reason", "X2 - reason"),
    Column("result", "X2 - result"),
    Column("moment", "X3 - moment"),
    Column("description", "X3 - description"),
    Column("key_sentences", "X4 - key sentences"),
    Column("annotator", "Annotator", required=False),
)

# Fallback for cells typed with an input method: curly quotes and full-width commas.
_CURLY_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "，": ","})
_QUOTES = "\"'“”‘’ "


def _normalize_header(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _cell_text(value: Any) -> str:
    return "" if value is None else id_text(value)


# --- reading the sheet -------------------------------------------------------------------

def _xlsx_rows(src: Path) -> Iterator[list[Any]]:
    from openpyxl import load_workbook  # lazy: only .xlsx input needs it

    wb = load_workbook(src, read_only=True, data_only=True)
    try:
        for row in wb.worksheets[0].iter_rows(values_only=True):
            yield list(row)
    finally:
        wb.close()  # read-only workbooks keep the file open until closed


def _csv_rows(src: Path) -> Iterator[list[Any]]:
    # utf-8-sig: Excel writes a BOM in front of UTF-8 CSVs, which would stick to "video_id".
    with open(src, encoding="utf-8-sig", newline="") as f:
        yield from csv.reader(f)


def read_sheet(src: Path) -> Iterator[list[str]]:
    """Rows of the first worksheet of an ``.xlsx`` or of a ``.csv``, as text cells.

    Raises:
        ValueError: Another file type.
    """
    readers: dict[str, Callable[[Path], Iterator[list[Any]]]] = {
        ".xlsx": _xlsx_rows, ".xlsm": _xlsx_rows, ".csv": _csv_rows,
    }
    reader = readers.get(src.suffix.lower())
    if reader is None:
        raise ValueError(f"{src}: ECVA sheets must be .xlsx or .csv, got {src.suffix or 'no extension'!r}")
    for row in reader(src):
        yield [_cell_text(v) for v in row]


def match_columns(header: list[str], src: Path) -> dict[str, int]:
    """Maps each field of :data:`COLUMNS` to its index in ``header``.

    Raises:
        ValueError: A required column is missing, or two columns match one prefix.
    """
    found: dict[str, int] = {}
    for col in COLUMNS:
        hits = [i for i, h in enumerate(header) if _normalize_header(h).startswith(_normalize_header(col.prefix))]
        if len(hits) > 1:
            raise ValueError(f"{src}: columns {', '.join(repr(header[i]) for i in hits)} all match {col.prefix!r}")
        if hits:
            found[col.field] = hits[0]
        elif col.required:
            raise ValueError(f"{src}: missing column {col.prefix!r} (ECVA sheet header: "
                             f"{', '.join(repr(h) for h in header if h) or 'empty'})")
    return found


# --- parsing cells -----------------------------------------------------------------------

def parse_type_score(text: str) -> tuple[str, float | None]:
    """``[Robbery, 5]`` -> ``("Robbery", 5)``; the score is optional (``[Robbery]``)."""
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    name, sep, score_text = inner.replace("，", ",").rpartition(",")
    if not sep:
        name, score_text = score_text, ""
    name = name.strip(_QUOTES)
    if not name:
        raise ValueError(f"no anomaly type in {text!r}")
    if not score_text.strip():
        return name, None
    try:
        score = float(score_text.strip(_QUOTES))
    except ValueError:
        raise ValueError(f"score {score_text.strip()!r} in {text!r} is not a number") from None
    return name, int(score) if score.is_integer() else score


def parse_string_list(text: str) -> list[str]:
    """``["a","b"]`` (JSON, or with single/curly quotes, full-width commas) -> ``["a", "b"]``.

    An empty cell gives ``[]``.
    """
    if not text.strip():
        return []
    value: Any = None
    for parse, candidate in ((json.loads, text), (json.loads, text.translate(_CURLY_QUOTES)),
                             (ast.literal_eval, text.translate(_CURLY_QUOTES))):
        try:
            value = parse(candidate)
            break
        except (ValueError, SyntaxError):
            continue
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ValueError(f"not a list of strings: {text!r}")
    return [str(v).strip() for v in value if str(v).strip()]


def _parsed(header: str, parse: Callable[[str], Any], text: str) -> Any:
    """Runs ``parse`` on a cell; its ValueError gets the column name in front."""
    try:
        return parse(text)
    except ValueError as e:
        raise ValueError(f"{header}: {e}") from None


# --- rows -> records ---------------------------------------------------------------------

def _record(cells: dict[str, str], headers: dict[str, str], where: str, media_root: Path | None) -> Record:
    video_id = cells["video_id"]
    if not video_id:
        raise ValueError("empty video_id")
    kind, score = _parsed(headers["type_score"], parse_type_score, cells["type_score"])
    segments = _parsed(headers["moment"], parse_mmss_spans, cells["moment"])
    key_sentences = _parsed(headers["key_sentences"], parse_string_list, cells["key_sentences"])
    answers = {
        "description": " ".join(bracketed_texts(cells["description"])),
        "cause": cells["reason"],
        "result": cells["result"],
    }
    anomaly: dict[str, Any] = {"abnormal": True, "classes": [kind]}
    optional = {"score": score, "segments": segments, "description": answers["description"],
                "cause": answers["cause"], "effect": answers["result"]}
    anomaly.update({k: v for k, v in optional.items() if v not in (None, "", [])})
    annotation: dict[str, Any] = {"anomaly": anomaly}
    pairs = [(QUESTIONS[task], answers[task], task) for task in QUESTIONS if answers[task]]
    if pairs:
        annotation["conversations"] = qa_turns(pairs)
    if key_sentences:
        annotation["key_sentences"] = key_sentences
    if cells.get("annotator"):
        annotation["meta"] = {"annotator": cells["annotator"]}
    return Record(video_id, annotation, where, video=media_path(with_video_ext(video_id), media_root))


def convert_ecva(src: Path, *, media_root: Path | None = None) -> Iterator[Item]:
    """Converts an ECVA annotation sheet (see the module docstring).

    Args:
        src: The ``.xlsx`` (first worksheet) or ``.csv`` file; the first row is the header.
        media_root: Folder holding ``<video_id>.mp4``.

    Yields:
        One Record per good row, one Skipped per bad row.

    Raises:
        ValueError: Not .xlsx/.csv, an empty sheet, or a missing required column.
    """
    rows = read_sheet(src)
    header = next(rows, None)
    if header is None:
        raise ValueError(f"{src}: empty sheet (no header row)")
    columns = match_columns(header, src)
    headers = {name: header[i] for name, i in columns.items()}
    for rowno, row in enumerate(rows, 2):
        if not any(row):
            continue  # spreadsheets carry blank rows below the data
        cells = {name: row[i].strip() if i < len(row) else "" for name, i in columns.items()}
        where = f"{src}: row {rowno}"
        yield guarded(where, _record, cells, headers, where, media_root)
