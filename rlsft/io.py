"""Small I/O helpers shared by every command: user errors, JSONL reading, atomic writes.

Every command reads user files through `read_jsonl` and writes through `atomic_write`, so a
bad line is reported with its number and no output is ever left half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable
from unittest import mock


class UserError(Exception):
    """A mistake in what the user typed or gave us; the CLI prints it on one line and exits 2."""


class HubUnreachable(UserError):
    """A hub data set that cannot be fetched here (offline, not cached): a run stops on it, a dry
    run reports it and goes on, since the machine that trains may have the hub."""


def read_jsonl(path: str | os.PathLike, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Read a JSONL file, failing with the line number of the first bad line.

    Blank lines are skipped. Every record must be a JSON object holding the `required` keys.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, where a JSONL file was expected")
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    rows = []
    with path.open("rb") as f:
        for lineno, line in enumerate(utf8_lines(f, path), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise UserError(f"{path}:{lineno}: missing field(s) {', '.join(missing)}")
            rows.append(row)
    return rows


def utf8_lines(f, path: Path) -> Iterable[str]:
    """The lines of binary file `f` as text, a line that is not UTF-8 refused in one line naming it
    (decoded line by line: a text file decodes ahead in blocks, and would name an earlier line)."""
    for lineno, raw in enumerate(f, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: a folder, where a file is to be written")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{path}: cannot be written, a file stands where its folder would be") from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are shared files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Characters that `str.splitlines` (and other line-based readers) treat as line breaks but that
# `json.dumps(..., ensure_ascii=False)` leaves raw; real model text does contain them (U+2028).
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def copy_tree_atomic(src: str | os.PathLike, dst: str | os.PathLike, ignore=None) -> None:
    """Copy folder `src` to `dst` (replacing it), atomically: a copy cut short is never read as done.
    `ignore`: as `shutil.copytree`'s."""

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    aside = work.with_name(work.name + "-old")  # the folder replaced, moved aside whole: a kill never leaves it half deleted
    try:
        shutil.copytree(src, work, dirs_exist_ok=True, ignore=ignore)
        if dst.exists():
            os.replace(dst, aside)
        os.replace(work, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(aside, ignore_errors=True)


def to_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    """Serialise records as JSONL text: UTF-8 kept readable, one object a line, and every
    character that some reader takes for a line break escaped, so a line is a record for any reader.

    >>> text = to_jsonl([{"completion": "4" + chr(0x2028) + "所以 4"}])  # U+2028, as a model wrote it
    >>> len(text.splitlines()), chr(0x2028) in text, json.loads(text)["completion"] == "4" + chr(0x2028) + "所以 4"
    (1, False, True)
    """
    return "".join(json.dumps(r, ensure_ascii=False).translate(_LINE_BREAKS) + "\n" for r in rows)


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats (invalid JSON) by None, recursively.

    >>> json_safe({"a": float("nan"), "b": [1.0, float("inf")]})
    {'a': None, 'b': [1.0, None]}
    """
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    """Pretty JSON with NaN written as null, so every output parses with strict JSON readers."""
    return json.dumps(json_safe(obj), ensure_ascii=False, indent=2) + "\n"


# Set while a study runs, and inherited by the workers and Slurm jobs it starts: held-out figures
# stay off the console and logs, in the run folders, read once, by the study's report (nothing
# held-out is read before its last run ends). WANDB_QUIET: wandb's closing run summary holds them
# too. Each run's wandb history and summary do receive them (`trainer.log_heldout`): a blind
# study's wandb project stays unopened until its report.
BLIND_ENV = {"RLSFT_BLIND": "1", "WANDB_QUIET": "true"}


@contextlib.contextmanager
def blind():
    """`rlsft train` and `rlsft eval` print no held-out figure inside this block (`is_blind`)."""
    with mock.patch.dict(os.environ, BLIND_ENV):
        yield


def is_blind() -> bool:
    """Whether held-out figures stay off the console (`blind`).

    >>> with blind(): is_blind()
    True
    """
    return os.environ.get("RLSFT_BLIND") == "1"


def utc_now() -> str:
    """The time now in UTC, as job.json, sessions and checkpoints stamp it ("2026-12-05T17:59:13Z")."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
