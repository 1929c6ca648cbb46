"""An evaluation's folder on disk: what was asked (manifest.json), every engine call's responses
and scores (responses/*.jsonl.gz), and the result (eval.json).

    EVAL_DIR/
      manifest.json                   checkpoint, suites, the resolved config, each suite's batches and items' digest
      responses/run<NNN>-shard<r>.jsonl.gz   one per shard and run of `harness eval` (gzip, one JSON line per item)
      responses/run<NNN>-rescore.jsonl.gz    written by `harness rescore` (then the older files are removed)
      eval.json                       the merged result, written (atomically) once every batch is done
      .lock                           locked (lockf) while a command writes the folder

One line per item: {"suite", "batch" (the index of its engine call's first item), "batch_items",
"index", "id", "task", "gen_s" (its share of the call's generation seconds), "samples": [{"text",
"tokens", "finish", "reward", "status", "extracted"}]}. A call's lines are written together and
flushed to disk (gzip sync flush, then fsync) before the next call's: a file cut anywhere (the
writer was killed) decodes up to its last flushed call, and a torn last line is dropped on read.
A batch counts as done only when all its lines are there, so an interrupted call is generated
again whole, as the same engine call (and so the same samples) as an uninterrupted run made.

Compression: each file is one gzip stream, flushed per call with Z_SYNC_FLUSH, which gzip's
decoder reads up to the cut even without the stream's trailer (`read_lines`). Text compresses
about 4x; the flush costs a few bytes per call. Nothing is compacted afterwards: a rerun writes a
new file and reads every file (where two hold a batch, the newest run's copy wins: a rescore's).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import re
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from harness.config import ConfigError
from harness.runs import EVAL_KIND as KIND
from harness.runs import EVAL_MANIFEST as MANIFEST

RESULT = "eval.json"
RESPONSES = "responses"
LOCK = ".lock"

_RUN_FILE = re.compile(r"run(\d+)-(shard\d+|rescore)\.jsonl\.gz$")


class RecordWriter:
    """Appends item records to a new gzip JSONL file, one engine call at a time, each call durable
    (flushed and fsynced) before `write_batch` returns."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._raw = open(path, "xb")  # never appended to: a cut file is only ever read
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", mtime=0)

    def write_batch(self, records: list[dict]) -> None:
        self._gz.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
        self._gz.flush()  # Z_SYNC_FLUSH: everything so far decodes without the stream's end
        self._raw.flush()
        os.fsync(self._raw.fileno())

    def close(self) -> None:
        if not self._raw.closed:
            self._gz.close()
            self._raw.close()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_lines(path: Path) -> Iterator[bytes]:
    """The complete lines of a gzip file that may have been cut anywhere (its writer killed): what
    decodes, up to the last newline; a torn last line and an undecodable tail are dropped."""
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                data = decoder.decompress(chunk)
            except zlib.error:
                break
            lines = (tail + data).split(b"\n")
            tail = lines.pop()
            yield from lines
            if decoder.eof:
                break


def run_files(folder: Path) -> list[tuple[int, Path]]:
    """(run number, path) of every records file, newest run first."""
    found = []
    for path in (folder / RESPONSES).glob("run*.jsonl.gz"):
        m = _RUN_FILE.match(path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found, key=lambda t: (-t[0], t[1].name))


def next_run(folder: Path) -> int:
    """The number the files of a new run get (one more than any there)."""
    files = run_files(folder)
    return files[0][0] + 1 if files else 1


def shard_file(folder: Path, run: int, shard: int) -> Path:
    return folder / RESPONSES / f"run{run:03d}-shard{shard}.jsonl.gz"


def rescore_file(folder: Path, run: int) -> Path:
    return folder / RESPONSES / f"run{run:03d}-rescore.jsonl.gz"


def _records_of(path: Path) -> Iterator[dict]:
    for line in read_lines(path):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        if not isinstance(record, dict):
            return
        yield record


def file_batches(path: Path) -> Iterator[tuple[tuple[str, int], list[dict]]]:
    """((suite, batch start), its item records in item order) for each complete batch of one file,
    in file order (a call's lines are written together, so a batch's lines are adjacent)."""
    key, group = None, []
    for record in [*_records_of(path), None]:
        here = None if record is None else (record["suite"], record["batch"])
        if here != key and group:
            by_index = {r["index"]: r for r in group}
            if len(by_index) == group[0]["batch_items"]:
                yield key, [by_index[i] for i in sorted(by_index)]
            group = []
        key = here
        if record is not None:
            group.append(record)


def done_batches(folder: Path, keep_text: bool = False) -> dict[tuple[str, int], list[dict]]:
    """Every complete batch on disk: (suite, batch start) -> its item records in item order. Where
    several files hold a batch, the newest run's copy is taken. `keep_text=False` drops the
    response texts (a paper-scale evaluation's texts are gigabytes; its scores are not)."""
    out: dict[tuple[str, int], list[dict]] = {}
    for _, path in run_files(folder):
        for key, records in file_batches(path):
            if key in out:
                continue
            if not keep_text:
                for r in records:
                    r["samples"] = [{k: v for k, v in s.items() if k not in ("text", "extracted")} for s in r["samples"]]
            out[key] = records
    return out


def items_digest(items: Iterable) -> str:
    """A digest of a suite's evaluated items (ids, prompts, targets): a resumed or rescored
    evaluation checks that it has the same items before it uses what is on disk."""
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps([it.id, it.prompt, it.target]).encode("utf-8"))
    return h.hexdigest()[:16]


def read_manifest(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("kind") == KIND else None


def differences(old, new, prefix: str = "") -> list[str]:
    """'key: old -> new' for each leaf where two manifests' identities differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


class FolderLock:
    """An exclusive lock on EVAL_DIR/.lock while a command writes the folder: a second command on
    the same folder is refused at once. A POSIX record lock (lockf), owned by this process alone:
    the processes it forks (scorer workers) do not hold it, and the kernel drops it when this
    process dies, kill -9 included (an flock would live on in the forked children)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._fh = None

    def __enter__(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.folder / LOCK, "a+")
        try:
            fcntl.lockf(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise ConfigError(f"'{self.folder}' is being written by another harness command (its {LOCK} is held); "
                              "wait for it or give another folder") from None
        return self

    def __exit__(self, *exc) -> None:
        fcntl.lockf(self._fh, fcntl.LOCK_UN)
        self._fh.close()
