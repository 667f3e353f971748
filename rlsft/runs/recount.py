"""Recounting a finished run's compute from its training log, for records written before a resumed
run counted every sitting.

Until then, a run resumed from a checkpoint with TRL's SFTTrainer (the `sft` and `distill-offline`
recipes) recorded one sitting's tokens (the largest count in its log): that trainer keeps its
running count on the trainer object, which starts at zero in every process, and no checkpoint
kept it. (GRPO and
on-policy distillation count in the Trainer's state, which every checkpoint keeps, so their
records were right.) The log still holds each sitting's count: metrics.jsonl keeps the rows up to
the checkpoint a sitting resumed from (`RunFolder.reopen`), then the resumed sitting's rows, whose
`num_tokens` starts again from zero. The correction adds the sittings up, and with them the FLOPs
(6 N per trained token), and says in run.json what it changed and from what
(`compute_corrected`). Run it on an archive of finished runs:

    python -c "import sys; from rlsft.runs.recount import correct_runs; correct_runs(sys.argv[1:])" reports/real-claims-smollm2/runs

It prints each run it corrected; a run that needs no correction is left as it is, and running it
again changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from rlsft.io import UserError
from rlsft.runs.compute import flops
from rlsft.runs.folder import RunFolder
from rlsft.runs.provenance import provenance

RESTARTED_COUNT = ("sft", "distill-offline")  # recipes whose Trainer (TRL's SFTTrainer) restarted its token count at a resume

FROM = "metrics.jsonl (TRL's running num_tokens, restarted at zero by each resumed sitting) and resumes.jsonl (the step each sitting went on from)"


def tokens_over_sittings(logged: list[tuple[int, float]], resumed_from: list[int]) -> dict[int, int]:
    """The run's tokens up to each logged step, every sitting counted, from (step, num_tokens) log
    rows whose count restarted at zero when a sitting resumed from a checkpoint (`resumed_from`).

    A count below the one before it marks a restart: the sittings before it had trained as many
    tokens as the last row before it shows, which must sit at the step the run resumed from (else
    the log lacks the tokens between that row and the checkpoint, and no exact total exists).

    >>> tokens_over_sittings([(4, 5058), (16, 20241), (20, 5044), (32, 20180)], [16])
    {4: 5058, 16: 20241, 20: 25285, 32: 40421}
    >>> tokens_over_sittings([(8, 900), (12, 1400)], [8])  # a count that went on across the resume
    {8: 900, 12: 1400}
    """
    earlier, last_step, last = 0, 0, 0
    out = {}
    for step, n in sorted(logged):
        if n < last:
            if last_step not in resumed_from:
                raise UserError(f"the token count drops after step {last_step}, but no sitting resumed from that step: "
                                f"the log lacks the count at the checkpoint (resumed from {resumed_from})")
            earlier += last
        last_step, last = step, int(n)
        out[step] = earlier + last
    return out


def recounted_compute(run: RunFolder) -> dict | None:
    """The run.json fields a finished run's log corrects (`compute`, `curve`, `compute_corrected`),
    or None when its record is right: it never resumed from a checkpoint, or its count went on."""
    record = run.record
    resumed = [s for s in run.resumed_from if s > 0]  # 0: a sitting that started over, and nothing before it counts
    if not resumed or record["recipe"] not in RESTARTED_COUNT or "compute_corrected" in record:
        return None
    logged = [(r["step"], r["num_tokens"]) for r in run.metrics if "num_tokens" in r]
    final_step = max((r["step"] for r in run.metrics if "train_runtime" in r), default=None)  # the Trainer's summary row
    if not logged or (final_step is not None and max(s for s, _ in logged) != final_step):
        raise UserError(f"{run.path}: the log's last token count is not at the last step ({final_step}); no exact total exists")
    counts = tokens_over_sittings(logged, resumed)
    compute = record["compute"]
    tokens = counts[max(counts)]
    if tokens == compute["train_tokens"]:
        return None

    def more_flops(then: int, now: int) -> int:  # a trained token's cost (6 N, LoRA's 4 N + 6 T); the recipes' other terms do not change with it
        return flops(compute["parameters"], now - then, 0, trainable=compute.get("trainable_parameters"))

    fixed = {**compute, "train_tokens": tokens, "flops": compute["flops"] + more_flops(compute["train_tokens"], tokens)}
    curve = [{**p, "pflops": fixed["flops"] / 1e15} if p["step"] == "final" else
             {**p, "tokens": counts[p["step"]], "pflops": p["pflops"] + more_flops(p["tokens"], counts[p["step"]]) / 1e15} if p["step"] in counts else p
             for p in record["curve"]]  # a point's tokens were the largest count logged by then, an earlier sitting's after a resume
    by = provenance()
    return {"compute": fixed, "curve": curve,
            "compute_corrected": {"from": FROM, "resumed_from": resumed, "before": {k: compute[k] for k in ("train_tokens", "flops")},
                                  "by": {"git_commit": by["git_commit"], "time_utc": by["time_utc"]}}}


def correct_runs(paths: list[str | Path]) -> list[RunFolder]:
    """Correct, in place, the run.json of every finished run under `paths` (run, pipeline, study or
    archive folders; every stage of a pipeline) whose log shows a larger compute; returns them."""
    runs = sorted({stage for run in RunFolder.find(paths) for stage in run.with_earlier_stages})
    corrected = []
    for run in runs:
        fields = recounted_compute(run)
        if fields:
            before, after = fields["compute_corrected"]["before"], fields["compute"]
            run.amend_record(fields)
            corrected.append(run)
            print(f"{run.path}: train_tokens {before['train_tokens']:,} -> {after['train_tokens']:,}, "
                  f"PFLOPs {before['flops'] / 1e15:.4g} -> {after['flops'] / 1e15:.4g}")
    return corrected
