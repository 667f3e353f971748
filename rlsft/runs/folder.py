"""`RunFolder`: the one place that knows how a run folder is laid out, for the writer (the
recipes) and every reader (report, study, resume, bench). No other module builds or parses
these paths.

    <run>/config.yaml             the resolved config, written before anything runs
          provenance.json         git commit, package versions, command
          metrics.jsonl           every logged training step: the training log, stored only here
          samples_train.jsonl     training completions (GRPO)
          teacher_traces.jsonl    verified teacher traces (offline distillation)
          resumes.jsonl           one line per `--resume`
          checkpoints/checkpoint-N/
          model/                  the trained model and its tokenizer
          eval_before/<task>/     held-out `rlsft eval` output of the starting model
          eval_after/<task>/      ... of the trained model
          eval_curve/step-N/<task>/  ... of the model at training step N (the accuracy-against-compute curve)
          run.json                compute and headline metrics; its presence marks a finished run
          job.json                where a study's executor ran it: executor, job id, command, log, exit code

A pipeline's folder holds one run folder per stage, `<pipeline>/<i>-<stage>/` (i from 1).
A study's folder holds `<study>/<arm>/seed<k>/`: a run folder, or a pipeline's folder.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path

import yaml

from rlsft.io import UserError, atomic_write, json_safe, read_jsonl, to_json, to_jsonl
from rlsft.runs.provenance import provenance
from rlsft.runs.record import RunRecord

JOB_FILE = "job.json"  # written by a study's executor, possibly before the run itself starts
PROGRESS_FILE = "rlsft_progress.json"  # in each checkpoint: training seconds, trained tokens and curve points up to it
_STAGE = re.compile(r"(\d+)-(.+)")
_SEED = re.compile(r"seed(\d+)")
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


class RunFolder:
    """A run's folder. Reading is lazy and cached: `record` (run.json) and `metrics` (metrics.jsonl)
    are read once per object.

    >>> run = RunFolder("runs/studies/s/r1/seed2/2-grpo")
    >>> run.stage_index, run.arm_and_seed(), run.pipeline.path.name
    (2, ('r1', 2), 'seed2')
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RunFolder) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __lt__(self, other: "RunFolder") -> bool:
        return str(self.path) < str(other.path)

    # ------------------------------------------------------------------ files
    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def record_file(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def resumes_file(self) -> Path:
        return self.path / "resumes.jsonl"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples_train_file(self) -> Path:
        return self.path / "samples_train.jsonl"

    @property
    def teacher_traces_file(self) -> Path:
        return self.path / "teacher_traces.jsonl"

    def eval_dir(self, when: str, task: str | None = None) -> Path:
        """`eval_before/` or `eval_after/` (when = "before" or "after"), or a task's folder inside it."""
        if when not in ("before", "after"):
            raise ValueError(f"when must be before or after, got {when!r}")
        folder = self.path / f"eval_{when}"
        return folder / task if task else folder

    def transfer_dir(self, task: str, before: bool = False) -> Path:
        """Evaluation on another task than the training one, measured after the study's runs
        (`transfer:` in a study YAML): of the trained model, or with `before` of the starting model."""
        return self.path / ("eval_transfer_before" if before else "eval_transfer") / task

    def curve_dir(self, step: int, task: str) -> Path:
        """Held-out evaluation of the model at training step `step`, for the curve."""
        return self.path / "eval_curve" / f"step-{step}" / task

    # ------------------------------------------------------------------ state
    @property
    def started(self) -> bool:
        """The run wrote its config: it can be resumed."""
        return self.config_file.is_file()

    @property
    def finished(self) -> bool:
        return self.record_file.is_file()

    @property
    def trained(self) -> bool:
        """Something was trained: a logged step or a checkpoint (such a folder is never deleted)."""
        return self.metrics_file.exists() or self.last_checkpoint() is not None

    @cached_property
    def record(self) -> dict:
        """run.json."""
        if not self.finished:
            raise UserError(f"{self.path}: no finished run (run.json)")
        try:
            return json.loads(self.record_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{self.record_file}: not valid JSON ({e}); the run's record is damaged") from None

    @cached_property
    def run_record(self) -> RunRecord:
        """run.json, typed (rlsft.runs.record): what studies, reports and the analysis read."""
        return RunRecord.from_json(self.record, self.path)

    @cached_property
    def metrics(self) -> list[dict]:
        """The logged training steps (metrics.jsonl), [] before the first."""
        if not self.metrics_file.is_file():
            return []
        return read_jsonl(self.metrics_file)

    @property
    def resumed_from(self) -> list[int]:
        """The step each `--resume` went on from (resumes.jsonl), in order; 0 for one that found no
        checkpoint and started over; [] for a run that never resumed."""
        if not self.resumes_file.is_file():
            return []
        return [row["from_step"] for row in read_jsonl(self.resumes_file, required=("from_step",))]

    @property
    def commits(self) -> list[str]:
        """The commits the run's sittings ran at, in order, each once: its start (provenance.json),
        each resume (resumes.jsonl) and its end (run.json). run.json's alone would hide a run that
        trained at one commit and finished at another."""
        found = []
        if (self.path / "provenance.json").is_file():
            found.append(json.loads((self.path / "provenance.json").read_text()).get("git_commit"))
        if self.resumes_file.is_file():
            found += [row.get("git_commit") for row in read_jsonl(self.resumes_file)]
        if self.finished:
            found.append(self.run_record.git_commit)
        return list(dict.fromkeys(c for c in found if c))

    @cached_property
    def config(self) -> dict:
        return yaml.safe_load(self.config_file.read_text())

    # ------------------------------------------------------------------ writing (main process only)
    def create(self, config: dict) -> None:
        """A new run: refuses an existing non-empty folder (runs are never overwritten)."""

        if self.path.exists() and any(p.name != JOB_FILE for p in self.path.iterdir()):
            raise UserError(f"run folder {self.path} already exists; pick another run.name or run.out_dir (runs are never overwritten)")
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_file, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        atomic_write(self.path / "provenance.json", to_json(provenance()))

    def reopen(self, config: dict) -> int:
        """Continue a killed run from its latest checkpoint; returns that step (0: none).

        The config must match the saved one. metrics.jsonl and samples_train.jsonl lose the steps
        after the checkpoint (they are trained and logged again), so neither has a gap or a duplicate.
        """

        now = yaml.safe_load(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        changed = sorted(config_differences(self.config, now))
        if changed:
            raise UserError(f"cannot resume {self.path}: its config differs at {', '.join(changed[:5])}; resume with the same config and overrides")
        checkpoint = self.last_checkpoint()
        step = checkpoint_step(checkpoint) if checkpoint else 0
        if self.metrics_file.is_file():
            atomic_write(self.metrics_file, to_jsonl(row for row in read_jsonl(self.metrics_file) if row["step"] <= step))
        if self.samples_train_file.is_file():  # a row's step is the one it trains (rows without one predate it: kept)
            rows = read_jsonl(self.samples_train_file)
            atomic_write(self.samples_train_file, to_jsonl(row for row in rows if (row.get("step") or 0) <= step))
        with open(self.resumes_file, "a", encoding="utf-8") as f:  # when and from where it went on
            f.write(json.dumps({"from_step": step, "checkpoint": str(checkpoint) if checkpoint else None, **provenance()}) + "\n")
        self.__dict__.pop("metrics", None)
        return step

    def write_record(self, record: dict) -> None:
        """run.json, with provenance: written last, it marks the run finished."""
        atomic_write(self.record_file, to_json({**record, "provenance": provenance()}))
        self.__dict__.pop("record", None)
        self.__dict__.pop("run_record", None)

    def amend_record(self, fields: dict) -> None:
        """Replace fields of a finished run's run.json (a correction), keeping the rest of it, its
        provenance (the run's, not the correction's) included."""
        atomic_write(self.record_file, to_json({**self.record, **fields}))
        self.__dict__.pop("record", None)
        self.__dict__.pop("run_record", None)

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(json_safe(row)) + "\n")

    def last_checkpoint(self) -> Path | None:
        """The newest complete Trainer checkpoint (one whose trainer_state.json was written), or None.
        transformers' `get_last_checkpoint` finds the newest folder; the completeness check is ours."""
        from transformers.trainer_utils import get_last_checkpoint

        if not self.checkpoints_dir.is_dir():
            return None
        done = [p for p in self.checkpoints_dir.iterdir() if _CHECKPOINT.fullmatch(p.name) and (p / "trainer_state.json").is_file()]
        newest = get_last_checkpoint(str(self.checkpoints_dir))
        if newest and Path(newest) in done:
            return Path(newest)
        return max(done, key=checkpoint_step, default=None)

    # ------------------------------------------------------------------ pipelines
    def stage(self, index: int, name: str) -> "RunFolder":
        """Stage `index` (from 1) of the pipeline whose folder this is."""
        return RunFolder(self.path / f"{index}-{name}")

    @property
    def stage_index(self) -> int | None:
        """This folder's place in its pipeline (1, 2, ...), None when it is not a stage."""
        m = _STAGE.fullmatch(self.path.name)
        return int(m.group(1)) if m else None

    @property
    def pipeline(self) -> "RunFolder | None":
        """The pipeline folder holding this stage, None for a run that is not a stage."""
        return RunFolder(self.path.parent) if self.stage_index else None

    def stages(self) -> list["RunFolder"]:
        """The stage folders inside this pipeline folder, in order."""
        if not self.path.is_dir():
            return []
        found = [RunFolder(p) for p in self.path.iterdir() if p.is_dir() and _STAGE.fullmatch(p.name)]
        return sorted(found, key=lambda r: r.stage_index)

    @cached_property
    def with_earlier_stages(self) -> list["RunFolder"]:
        """This run and, for a pipeline stage, the finished stages before it: what the recipe cost.
        Cached, so each stage's run.json is read once however many readers ask."""
        if not self.stage_index:
            return [self]
        return [s for s in self.pipeline.stages() if s.stage_index < self.stage_index and s.finished] + [self]

    def total_compute(self) -> dict[str, float]:
        """FLOPs and training wall seconds of this run and the earlier stages of its pipeline."""
        computes = [s.run_record.compute for s in self.with_earlier_stages]
        return {"flops": sum(c.flops for c in computes), "wall_seconds": sum(c.wall_seconds for c in computes)}

    # ------------------------------------------------------------------ studies
    @staticmethod
    def in_study(root: str | Path, arm: str, seed: int) -> "RunFolder":
        """The folder of `arm`'s run with `seed` in a study (a pipeline's folder for a pipeline arm)."""
        return RunFolder(Path(root) / arm / f"seed{seed}")

    def arm_and_seed(self) -> tuple[str, int]:
        """(arm, seed): from a study's `<arm>/seed<k>/` layout, else the run's name (a trailing
        `-seed<k>` dropped) and its config's seed."""
        parts = self.path.parts
        for i in range(len(parts) - 1, 0, -1):
            m = _SEED.fullmatch(parts[i])
            if m:
                return parts[i - 1], int(m.group(1))
        return re.sub(r"-seed\d+$", "", self.run_record.run_name), self.run_record.seed

    @property
    def is_first_stage_or_run(self) -> bool:
        """True unless this is a later pipeline stage (whose starting model is an earlier stage's output)."""
        return (self.stage_index or 1) == 1

    @staticmethod
    def find(paths: list[str | Path]) -> list["RunFolder"]:
        """The finished runs under `paths` (run folders, pipelines, studies); of a pipeline, its last stage only."""
        runs = set()
        for p in map(Path, paths):
            if not p.exists():
                raise UserError(f"no such run or study folder: {p}")
            found = [RunFolder(p)] if (p / "run.json").is_file() else [
                RunFolder(f.parent) for f in p.rglob("run.json")
                if not any(part.startswith(".") for part in f.relative_to(p).parts)]  # a half-copied archive entry (.seed0.partial) is not a run
            if not found:
                raise UserError(f"{p}: no finished run (run.json) inside")
            for run in found:
                if run.stage_index and run.stage_index != max(s.stage_index for s in run.pipeline.stages()):
                    continue  # a pipeline is represented by its last stage
                runs.add(run)
        return sorted(runs)


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a Trainer checkpoint was saved at.

    >>> checkpoint_step(Path("runs/a/checkpoints/checkpoint-40"))
    40
    """
    return int(_CHECKPOINT.fullmatch(checkpoint.name).group(1))


def config_differences(a, b, prefix: str = "") -> list[str]:
    """Dotted keys where two nested config dicts differ.

    >>> config_differences({"training": {"lr": 1, "steps": 2}}, {"training": {"lr": 1, "steps": 3}})
    ['training.steps']
    """
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in config_differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]
