"""Provenance of every result: the lab's git commit, package versions, machine and command."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

PACKAGES = ("rlsft", "torch", "transformers", "trl", "datasets", "accelerate", "math-verify", "tokenizers", "wandb")


def git_commit(repo: Path = Path(__file__).resolve().parent.parent) -> str:
    """HEAD commit of the lab's checkout, with `-dirty` when tracked files outside reports/ differ or
    untracked files sit in the code or configs (rlsft/, recipes/, configs/: a new config or module
    changes what a run does as much as an edit); `unknown` outside git. reports/ is left out: a
    study archiving into a committed archive there (`--archive reports/NAME/runs`) changes it as it
    runs, which changes nothing a run does."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports"],
                               cwd=repo, capture_output=True, text=True, timeout=5).stdout.strip()
        dirty += subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "rlsft", "recipes", "configs"],
                                cwd=repo, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def provenance() -> dict:
    return {
        "git_commit": git_commit(),
        "versions": versions(),
        "machine": f"{platform.system()} {platform.machine()}",
        "command": " ".join(sys.argv),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
