"""The record of a finished run, typed: what studies, reports and the analysis read.

`rlsft.trainer.finish_run` writes `run.json`; `RunRecord.read` (or `RunFolder.run_record`) reads it
back. This module is the one place where a run's raw config and results are read by key, with the
defaults that older records (archived studies) need; everything else reads the fields below (an
unfinished run's step budget too: `max_steps_of`).

>>> rec = RunRecord.from_json({"recipe": "grpo", "config": {"run": {"name": "r1_zero", "seed": 2}, "model": {"name": "m"},
...                            "training": {"max_steps": 50}}, "compute": {"flops": 3e15, "wall_seconds": 60.0},
...                            "eval_after": {}, "curve": [{"step": 10, "pflops": 0.6}]})
>>> rec.seed, rec.max_steps, rec.pflops, rec.git_commit, rec.compute.peak_memory_gb
(2, 50, 3.0, 'unknown', None)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# What records written before `flops_formula` existed (the lab before 2026-12-05's evening) count
OLD_FLOPS_FORMULA = "6N a trained token (4N + 2T under LoRA before 2026-12-05), 2N a forward-only token; N: every parameter"


@dataclass(frozen=True)
class Compute:
    """What a run spent (rlsft.runs.compute.compute_record)."""

    flops: int | float
    wall_seconds: float
    device: str = "unknown"
    teacher_flops: int | float = 0
    peak_memory_gb: float | None = None  # peak memory: a GPU's allocated, else the process's resident set (None in older records)
    flops_formula: str = OLD_FLOPS_FORMULA  # what `flops` counts (`compute.FLOPS_FORMULA`; older records: every parameter as N)


@dataclass(frozen=True)
class RunRecord:
    """A finished run: the settings analysis reads from its config, its compute, its headline
    evaluations and its accuracy-against-compute curve. Full metrics and samples stay in the run
    folder's eval_* directories: `RunFolder(record.folder).eval_dir(when, task)`."""

    recipe: str
    run_name: str
    seed: int
    model: str  # the starting model (model.name)
    teacher: str | None  # distillation's teacher (distill.teacher), None otherwise
    max_steps: int | None  # training.max_steps when the run had one (> 0)
    template: str  # the prompt form the run used (data.template as resolved)
    think_prefill: bool
    eval_split: str  # the held-out split its evaluations read (test or validation)
    eval_temperature: float
    compute: Compute
    eval_before: dict | None  # {task: headline metrics} before training, None when skipped
    eval_after: dict  # {task: headline metrics}
    curve: list[dict]  # [{step, pflops, pass@1, ...}], the final point last
    git_commit: str  # the commit the run ran at ("unknown" for records without provenance)
    folder: str = ""  # the run folder it was read from ("" when built from a dict alone)

    @property
    def pflops(self) -> float:
        return self.compute.flops / 1e15

    @classmethod
    def from_json(cls, data: dict, folder: str | Path = "") -> "RunRecord":
        cfg = data.get("config", {})
        run, evaluation = cfg.get("run", {}), cfg.get("eval", {})
        c = data.get("compute", {})
        return cls(
            recipe=data.get("recipe", "unknown"), run_name=run.get("name", ""), seed=int(run.get("seed", 0)),
            model=cfg.get("model", {}).get("name", ""), teacher=(cfg.get("distill") or {}).get("teacher"),
            max_steps=max_steps_of(cfg),
            template=cfg.get("data", {}).get("template", "auto"), think_prefill=bool(cfg.get("data", {}).get("think_prefill", False)),
            eval_split=evaluation.get("split", "test"), eval_temperature=float(evaluation.get("temperature", 1.0)),
            # numbers as written (FLOPs are integers in run.json): sums and ratios come out as they did from the raw JSON
            compute=Compute(flops=c.get("flops", 0), wall_seconds=c.get("wall_seconds", 0.0), device=c.get("device", "unknown"),
                            teacher_flops=c.get("teacher_flops", 0), peak_memory_gb=c.get("peak_memory_gb"),
                            flops_formula=c.get("flops_formula", OLD_FLOPS_FORMULA)),
            eval_before=data.get("eval_before"), eval_after=data.get("eval_after") or {}, curve=list(data.get("curve") or []),
            git_commit=data.get("provenance", {}).get("git_commit", "unknown"), folder=str(folder))

    @classmethod
    def read(cls, path: str | Path) -> "RunRecord":
        """The record in `path` (a run.json, or the run folder holding it)."""
        path = Path(path)
        file = path / "run.json" if path.is_dir() else path
        return cls.from_json(json.loads(file.read_text()), file.parent)


def max_steps_of(config: dict) -> int | None:
    """`training.max_steps` of a run's saved config (run.json's or config.yaml's) when it is set (> 0).

    >>> max_steps_of({"training": {"max_steps": 32}}), max_steps_of({"training": {"max_steps": -1}}), max_steps_of({})
    (32, None, None)
    """
    max_steps = (config.get("training") or {}).get("max_steps")
    return max_steps if isinstance(max_steps, int) and max_steps > 0 else None
