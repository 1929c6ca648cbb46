"""Items built once: procedural items and training pools cached on disk, under the harness cache.

Making items costs minutes at the paper's scale (the 9,516 prorl96 eval items ~4.5 min of CPU, the
40,000 Reasoning Gym training items of a verl prepare ~5 min), and they are the same every time for
the same inputs. `ItemCache.get` keeps each built list in one file under `<cache>/items/`
(the harness cache: `Config.resolved_cache_dir()`, which the jobs pass to `suites.build_suite`),
named by a hash of its key and holding the key itself:

- the key is everything that determines the items: the suite, the item-shaping fields of its
  config section, the seed, the split, the number asked for, the versions of the libraries that
  generate them (reasoning-gym, sympy, numpy for Reasoning Gym), the Python version, and
  `ITEMS_VERSION` (bump it when code changes what the generators, the split rule or the training
  data reader make);
- the file is one JSON header line (format, key, item count, sha256 and size of the body) and a
  gzip-compressed body: the items, references included, in the tagged JSON codec
  (harness/codec.py), so cached items compare equal (==) to freshly built ones, tuples, int-keyed
  dicts, fractions and numpy scalars included;
- written atomically (harness/runs.py), so a killed build leaves no entry, and two processes that
  build the same entry at once write the same bytes;
- read back only when the header parses, its key equals the wanted key, and the body's size and
  sha256 match: a truncated, bit-flipped or stale entry is logged and rebuilt, never used.

Every lookup logs one line (on `logging`, WARNING level so that it shows without any logging set
up, as the training data's summary does): `<label>: built N items in S s (cached ...)` or
`<label>: cache hit, N items in S s (...)`. An entry that cannot be written (a value the codec
refuses, a read-only cache) leaves the built items in use and says so in the same line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, TypeVar

from harness import codec
from harness.runs import write_bytes_atomic
from suites.base import Item

ITEMS_VERSION = 1
"""Bump when code changes the items made for the same key (a generator, the split rule, the item
ids, the training data reader), so entries made by older code are not reused."""

FORMAT = 1
"""Layout of an entry file (header line, gzip body)."""

FOLDER = "items"
"""Subfolder of the harness cache holding the entries."""

logger = logging.getLogger(__name__)

T = TypeVar("T")

_ITEM_FIELDS = tuple(f.name for f in fields(Item))


def items_to_plain(items: list[Item]) -> list[dict]:
    """Items as dicts of their fields (the references as they are: the codec writes them)."""
    return [{name: getattr(it, name) for name in _ITEM_FIELDS} for it in items]


def items_from_plain(rows: list[dict]) -> list[Item]:
    return [Item(**row) for row in rows]


class StaleEntry(Exception):
    """An entry that cannot be used: the reason is the message."""


class ItemCache:
    """Entries under `root / "items"`; `root` is the harness cache directory."""

    def __init__(self, root: str | Path):
        self.folder = Path(root).expanduser() / FOLDER

    def path(self, label: str, key: dict) -> Path:
        """The entry file of `key` (`label` only makes the name readable)."""
        safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)[:80]
        return self.folder / f"{safe}-{key_digest(key)[:20]}.items"

    def items(self, label: str, key: dict, build: Callable[[], list[Item]]) -> list[Item]:
        """The items of `key`: read from the cache, or made by `build` and stored."""
        return self.get(label, key, build, items_to_plain, items_from_plain, len)

    def get(self, label: str, key: dict, build: Callable[[], T], dump: Callable[[T], Any],
            load: Callable[[Any], T], count: Callable[[T], int]) -> T:
        """The value of `key`: `load` of the stored entry when it is sound, else `build()`, stored as
        `dump` of it (tagged JSON). Logs one line saying which. `key` gets `ITEMS_VERSION` and the
        Python version added."""
        key = {**key, "items_version": ITEMS_VERSION, "python": python_version()}
        path = self.path(label, key)
        started = time.perf_counter()
        note = ""
        if path.exists():
            try:
                payload = read_entry(path, key)
                try:
                    value = load(payload)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:  # sound file, not the payload this code writes
                    raise StaleEntry(f"unreadable payload: {type(exc).__name__}: {exc}") from None
                logger.warning(f"{label}: cache hit, {count(value)} items in {time.perf_counter() - started:.1f} s ({path})")
                return value
            except StaleEntry as exc:
                logger.warning(f"{label}: cache entry {path} is not used: {exc}; rebuilding")
                note = "; replaced the unusable entry"
        value = build()
        built_s = time.perf_counter() - started
        try:
            write_entry(path, key, dump(value), count(value))
            where = f"cached at {path}{note}"
        except (TypeError, OSError) as exc:  # a value the codec refuses; a cache that cannot be written
            where = f"NOT cached: {exc}"
        logger.warning(f"{label}: built {count(value)} items in {built_s:.1f} s ({where})")
        return value


def key_digest(key: dict) -> str:
    return hashlib.sha256(_canonical(key).encode("utf-8")).hexdigest()


def _canonical(key: dict) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=repr)


def write_entry(path: Path, key: dict, payload: Any, count: int) -> None:
    """One entry, atomically: the header line, then the gzip body (TypeError for a value the codec refuses)."""
    body = gzip.compress(codec.encode(payload).encode("utf-8"), compresslevel=3, mtime=0)
    header = {"format": FORMAT, "key": json.loads(_canonical(key)), "count": count,
              "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    write_bytes_atomic(path, json.dumps(header, sort_keys=True).encode("utf-8") + b"\n" + body)


def read_entry(path: Path, key: dict) -> Any:
    """The payload stored at `path` for `key`; StaleEntry when the file is unreadable, truncated,
    altered, or holds another key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StaleEntry(f"unreadable: {exc.strerror}") from None
    line, newline, body = data.partition(b"\n")
    try:
        header = json.loads(line) if newline else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or not {"format", "key", "bytes", "sha256"} <= header.keys():
        raise StaleEntry("no header")
    if header["format"] != FORMAT:
        raise StaleEntry(f"format {header['format']!r}, this harness reads {FORMAT}")
    if _canonical(header["key"]) != _canonical(key):
        wanted, stored = json.loads(_canonical(key)), header["key"]
        differ = sorted(k for k in set(wanted) | set(stored if isinstance(stored, dict) else {})
                        if not isinstance(stored, dict) or wanted.get(k) != stored.get(k))
        raise StaleEntry(f"stale: its key differs in {', '.join(differ) or 'form'}")
    if len(body) != header["bytes"]:
        raise StaleEntry(f"truncated or extended: {len(body)} bytes of body, the header says {header['bytes']}")
    if hashlib.sha256(body).hexdigest() != header["sha256"]:
        raise StaleEntry("corrupt: the body's sha256 differs from the header's")
    try:
        return codec.decode(gzip.decompress(body).decode("utf-8"))
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:  # sound digest, unreadable content (a newer writer)
        raise StaleEntry(f"undecodable: {type(exc).__name__}: {exc}") from None


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"
