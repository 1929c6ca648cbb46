"""Reading dataset files (one JSON object per line) with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from harness.config.errors import UserError


class DatasetError(UserError):
    """A dataset file that cannot be used as it is; the message is one line with the line number."""


def parse_record(path: Path, number: int, line: str) -> dict:
    """Line `number` of a .jsonl file as a JSON object, or one DatasetError naming the file and line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
    return record


def read_jsonl(path: str | Path, required: Iterable[str] = ()) -> list[dict]:
    """Every record of a .jsonl file; blank lines are skipped, anything else malformed is an error."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file '{path}' does not exist")
    required = tuple(required)
    records = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            record = parse_record(path, number, line)
            missing = [k for k in required if k not in record]
            if missing:
                raise DatasetError(f"{path}:{number}: missing field(s) {', '.join(missing)}; each line needs {', '.join(required)}")
            records.append(record)
    return records
