"""Read raw rows from JSONL, CSV, Parquet and `datasets` saved to disk.

Each reader yields (location, row) pairs: the location is "line N" (1-based line of the file, so
the CSV header is line 1) for text formats and "row N" (0-based) for columnar ones, which is what
an error message must point at. Saved `datasets` are read with pyarrow straight from their Arrow
files, so the `datasets` package is not needed.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterator, Literal, Optional

from neuronjax.errors import DataError
from neuronjax.tasks.schema import FieldMap, Task, UnreadableRow, make_task, validate_rows

FileFormat = Literal["auto", "jsonl", "csv", "parquet", "hf_disk"]
Rows = Iterator[tuple[str, dict[str, Any]]]


def infer_format(path: str) -> str:
    """File format from the path: a directory is a saved dataset, otherwise the extension."""
    if os.path.isdir(path):
        return "hf_disk"
    ext = os.path.splitext(path)[1].lower()
    by_ext = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
    if ext not in by_ext:
        raise DataError(
            f"{path}: cannot tell the format from the extension {ext!r}; expected .jsonl, .csv, "
            ".parquet or a directory written by datasets' save_to_disk (or set format)"
        )
    return by_ext[ext]


def read_jsonl(path: str) -> Rows:
    """One JSON object per line; blank lines are skipped. A line that is not UTF-8, not JSON or
    not an object comes out as an `UnreadableRow`, a bad row like any other."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield f"line {number}", UnreadableRow("<utf-8>", f"not UTF-8 text (byte {err.start} of the line)")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield f"line {number}", UnreadableRow("<json>", f"not valid JSON ({err.msg})")
                continue
            if not isinstance(row, dict):
                yield f"line {number}", UnreadableRow("<json>", f"expected an object, got {type(row).__name__}")
                continue
            yield f"line {number}", row


def read_csv(path: str) -> Rows:
    """Header line first; empty cells read as missing fields. Cells beyond the header's columns
    make the row bad (they would otherwise be lost)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        try:
            for row in reader:
                # reader.line_num is the file line the row ended on (multi-line cells span lines).
                location = f"line {reader.line_num}"
                if row.get(None):
                    yield location, UnreadableRow(
                        "<csv>", f"{len(row[None])} more cell(s) than the {len(reader.fieldnames)} header columns"
                    )
                    continue
                yield location, {k: v for k, v in row.items() if k is not None and v != ""}
        except UnicodeDecodeError:
            raise DataError(f"{path}:line {_first_non_utf8_line(path)}: not UTF-8 text; expected a UTF-8 CSV file") from None


def _first_non_utf8_line(path: str) -> int:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def _arrow_rows(table) -> Rows:
    for number, row in enumerate(table.to_pylist()):
        yield f"row {number}", row


def _pyarrow(path: str, what: str):
    """pyarrow (the [parquet] extra), or an error naming the file and the extra."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataError(f"{path}: reading {what} needs pyarrow, which is not installed; "
                        "pip install 'neuronjax[parquet]'") from None  # fmt: skip
    return pyarrow


def read_parquet(path: str) -> Rows:
    pa = _pyarrow(path, "a Parquet file")
    yield from _arrow_rows(pa.parquet.read_table(path))


def read_saved_dataset(path: str, split: Optional[str] = None) -> Rows:
    """A `datasets.Dataset` (or one split of a `DatasetDict`) written by `save_to_disk`."""
    pa = _pyarrow(path, "a saved dataset (Arrow files)")
    dict_file = os.path.join(path, "dataset_dict.json")
    if os.path.exists(dict_file):
        with open(dict_file) as f:
            splits = json.load(f)["splits"]
        if split is None:
            if len(splits) != 1:
                raise DataError(f"{path}: a DatasetDict with splits {splits}; set split to one of them")
            split = splits[0]
        if split not in splits:
            raise DataError(f"{path}: split {split!r} not found; expected one of {splits}")
        path = os.path.join(path, split)
    state_file = os.path.join(path, "state.json")
    if not os.path.exists(state_file):
        raise DataError(f"{path}: no state.json; expected a directory written by datasets' save_to_disk")
    with open(state_file) as f:
        files = [entry["filename"] for entry in json.load(f)["_data_files"]]
    tables = []
    for name in files:
        with pa.memory_map(os.path.join(path, name)) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    yield from _arrow_rows(pa.concat_tables(tables))


def read_rows(path: str, fmt: FileFormat = "auto", split: Optional[str] = None) -> Rows:
    """(location, raw row) pairs from a task file of any supported format."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"task file not found: {path}")
    fmt = infer_format(path) if fmt == "auto" else fmt
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "csv":
        return read_csv(path)
    if fmt == "parquet":
        return read_parquet(path)
    if fmt == "hf_disk":
        return read_saved_dataset(path, split)
    raise DataError(f"{path}: format {fmt!r}; expected auto, jsonl, csv, parquet or hf_disk")


def load_task_file(
    path: str,
    name: Optional[str] = None,
    fields: Optional[FieldMap] = None,
    fmt: FileFormat = "auto",
    on_error: Literal["fail", "skip"] = "fail",
    split: Optional[str] = None,
    drop_header_rows: bool = True,
) -> Task:
    """A validated task from a file; see `schema.validate_rows` for what counts as a bad row.
    `fields` defaults to FieldMap() (question, options, answer, id, subject)."""
    fields = fields or FieldMap()
    name = name or os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    rows = read_rows(path, fmt, split)
    items, problems, header_rows = validate_rows(rows, fields, path, f"{name}:", drop_header_rows)
    return make_task(name, path, items, problems, header_rows, on_error)
