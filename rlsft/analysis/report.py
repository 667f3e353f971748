"""`rlsft report RUNS_OR_STUDY ... --out reports/NAME/`: a Markdown report with PNG plots,
read only from run folders, so any runs can be compared.

Inputs: run folders, or folders holding them (a study, a pipeline), read through `RunFolder`
(which also gives each run's arm and seed); a pipeline is represented by its last stage. The base
model is read from the runs' eval_before.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from rlsft.io import UserError, atomic_write
from rlsft.runs.folder import RunFolder


def curve_keys() -> list[tuple[str, str]]:
    """(metrics.jsonl key, label) of the training curves: one per registered reward (TRL logs
    `rewards/<function name>/mean`), the monitor's mixing rate, length and loss."""
    from rlsft.scoring.rewards import REWARDS

    rewards = [(f"rewards/{fn.__name__}/mean", f"training reward: {name}") for name, fn in REWARDS.items()]
    return rewards + [("rewards/language_monitor/mean", "training mixing rate"),
                      ("completions/mean_length", "completion length (tokens)"), ("loss", "loss")]


def per_problem(folder: Path, task: str) -> dict[str, dict[str, float]]:
    """{metric: {problem_id: mean over samples}} for correct, mixed, format_ok, length."""
    path = folder / task / "samples.jsonl"
    if not path.is_file():
        return {}
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in path.read_text(encoding="utf-8").splitlines():
        s = json.loads(line)
        for key, name in (("correct", "accuracy"), ("mixed", "mixing"), ("format_ok", "format"), ("length", "length")):
            if s.get(key) is not None:
                acc[name][s["id"]].append(float(s[key]))
    return {m: {i: sum(v) / len(v) for i, v in by_id.items()} for m, by_id in acc.items()}


def language_composition(folder: Path, task: str) -> dict[str, float] | None:
    """Shares of a run's held-out completions that reason only in the target language, only in
    another, or switch between them (see `rlsft.scoring.language.reasoning_language`); None without samples."""
    from rlsft.scoring.language import reasoning_language

    path = folder / task / "samples.jsonl"
    if not path.is_file():
        return None
    kinds = [reasoning_language(json.loads(line)["completion"]) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {k: kinds.count(k) / len(kinds) for k in ("target", "other", "switched", "none")} if kinds else None


def load_results(runs: list[RunFolder], task: str, base_arm: str | None = None) -> dict:
    """Everything the report and the claims read, per arm and seed.

    The base model is read from `eval_before` of `base_arm`'s runs (any arm when None), never from
    a later pipeline stage, whose starting model is the previous stage's output.
    """
    scores: dict[str, dict[str, dict[int, dict[str, float]]]] = defaultdict(lambda: defaultdict(dict))
    pflops: dict[str, dict[int, float]] = defaultdict(dict)
    minutes: dict[str, dict[int, float]] = defaultdict(dict)  # training wall minutes, all stages
    curves: dict[str, dict[int, list[dict]]] = defaultdict(dict)
    records: dict[str, dict[int, dict]] = defaultdict(dict)
    compute_curves: dict = defaultdict(lambda: defaultdict(dict))  # metric -> arm -> seed -> [(pflops, {problem: value})]
    for run in runs:
        arm, seed = run.arm_and_seed()
        records[arm][seed] = run.record
        for metric, values in per_problem(run.eval_dir("after"), task).items():
            scores[metric][arm][seed] = values
        base_source = run.is_first_stage_or_run and (base_arm is None or arm == base_arm)
        before = per_problem(run.eval_dir("before"), task) if base_source else {}
        for metric, values in before.items():
            scores[metric].setdefault("base", {}).setdefault(seed, values)
        cost = run.total_compute()
        pflops[arm][seed] = cost["flops"] / 1e15
        minutes[arm][seed] = cost["wall_seconds"] / 60
        curves[arm][seed] = run.metrics
        for pflop, metric_scores in compute_curve(run, task):
            for metric, values in metric_scores.items():
                compute_curves[metric][arm].setdefault(seed, []).append((pflop, values))
    return {"scores": scores, "pflops": pflops, "minutes": minutes, "curves": curves, "records": records,
            "compute_curves": compute_curves}


def compute_curve(run: RunFolder, task: str) -> list[tuple[float, dict[str, dict[str, float]]]]:
    """The held-out scores of a run (and of its pipeline's earlier stages) against the PFLOPs spent
    to reach them: the starting model at 0, each curve checkpoint, and each stage's trained model.
    [(pflops, {metric: {problem_id: value}})], read from the folders `rlsft eval` wrote."""
    points, offset = [], 0.0
    for i, stage in enumerate(run.with_earlier_stages):
        if i == 0 and stage.eval_dir("before", task).is_dir():
            points.append((0.0, per_problem(stage.eval_dir("before"), task)))
        for pt in stage.record.get("curve", []):
            folder = stage.eval_dir("after") if pt["step"] == "final" else stage.curve_dir(pt["step"], task).parent
            if (folder / task).is_dir():
                points.append((offset + pt["pflops"], per_problem(folder, task)))
        offset += stage.record["compute"]["flops"] / 1e15
    return [p for p in points if p[1]]


def _band(curves_by_seed: dict[int, list[dict]], key: str, x_scale: dict[int, float] | None = None):
    """(x, mean, low, high) over seeds of a logged key, on the steps all seeds logged."""
    per_seed = {}
    for seed, steps in curves_by_seed.items():
        pts = {s["step"]: s[key] for s in steps if key in s and s[key] is not None}
        if pts:
            per_seed[seed] = pts
    if not per_seed:
        return None
    common = sorted(set.intersection(*(set(p) for p in per_seed.values())))
    if not common:
        return None
    ys = [[per_seed[s][x] for s in per_seed] for x in common]
    xs = [x * (sum(x_scale[s] for s in per_seed) / len(per_seed) if x_scale else 1.0) for x in common]
    return xs, [sum(y) / len(y) for y in ys], [min(y) for y in ys], [max(y) for y in ys]


def plot_curves(results: dict, out: Path) -> list[str]:
    """Training curves against step and against PFLOPs, one line per arm, seed range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for key, label in curve_keys():
        arms = {arm: c for arm, c in results["curves"].items() if _band(c, key)}
        if not arms:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for arm, by_seed in sorted(arms.items()):
            steps_total = {s: max([x["step"] for x in v] + [1]) for s, v in by_seed.items()}
            own_pflops = {s: results["records"][arm][s]["compute"]["flops"] / 1e15 / steps_total[s] for s in by_seed}
            for ax, scale in ((axes[0], None), (axes[1], own_pflops)):
                xs, mean, lo, hi = _band(by_seed, key, scale)
                line, = ax.plot(xs, mean, label=arm)
                ax.fill_between(xs, lo, hi, alpha=0.2, color=line.get_color())
        axes[0].set_xlabel("training step")
        axes[1].set_xlabel("PFLOPs spent in this stage")
        for ax in axes:
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{label}: mean over seeds, shaded min-max")
        fig.tight_layout()
        name = "curve_" + re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_") + ".png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)
    return files


def arm_summary(results: dict, n_boot: int = 1000) -> dict[str, dict]:
    """Per arm (and base): mean over seeds of held-out accuracy, mixing, format and length, each
    with a 95% hierarchical bootstrap interval (seeds, then problems), plus mean PFLOPs and training
    wall minutes per run."""
    from rlsft.analysis.claims import hierarchical_bootstrap

    summary: dict[str, dict] = defaultdict(dict)
    for metric, by_arm in results["scores"].items():
        for arm, by_seed in by_arm.items():
            data = {s: list(v.values()) for s, v in by_seed.items() if v}
            if data:
                summary[arm][metric] = hierarchical_bootstrap(data, n_boot)
                summary[arm]["seeds"] = sorted(data)
    for arm, by_seed in results["pflops"].items():
        summary[arm]["pflops"] = sum(by_seed.values()) / len(by_seed)
    for arm, by_seed in results.get("minutes", {}).items():
        summary[arm]["minutes"] = sum(by_seed.values()) / len(by_seed)
    return dict(summary)


def plot_accuracy_vs_compute(results: dict, out: Path) -> str | None:
    """The main figure: held-out pass@1 against PFLOPs spent, every arm, mean over seeds at each
    evaluated checkpoint, shaded between the seeds' lowest and highest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = results["compute_curves"].get("accuracy", {})
    if not any(len(points) > 1 for by_seed in arms.values() for points in by_seed.values()):
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for arm, by_seed in sorted(arms.items()):
        n = min(len(points) for points in by_seed.values())
        xs = [sum(by_seed[s][i][0] for s in by_seed) / len(by_seed) for i in range(n)]
        ys = [[sum(by_seed[s][i][1].values()) / len(by_seed[s][i][1]) for s in by_seed] for i in range(n)]
        line, = ax.plot(xs, [sum(y) / len(y) for y in ys], marker="o", markersize=3, label=f"{arm} ({len(by_seed)} seeds)")
        ax.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys], alpha=0.15, color=line.get_color())
    ax.set_xlabel("PFLOPs spent (all stages, teacher included)")
    ax.set_ylabel("held-out pass@1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("accuracy against compute: mean over seeds, shaded min-max")
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_pflops.png", dpi=110)
    plt.close(fig)
    return "accuracy_vs_pflops.png"


def plot_final(summary: dict, out: Path) -> str:
    """Held-out accuracy and mixing against PFLOPs per arm, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric, label in ((axes[0], "accuracy", "held-out pass@1"), (axes[1], "mixing", "held-out mixing rate")):
        for arm, s in sorted(summary.items()):
            if metric not in s:
                continue
            est, lo, hi = s[metric]
            x = s.get("pflops", 0.0)
            ax.errorbar([x], [est], yerr=[[est - lo], [hi - est]], fmt="o", capsize=3, label=arm)
            ax.annotate(arm, (x, est), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel("PFLOPs per run (all stages, teacher included)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "final_vs_pflops.png", dpi=110)
    plt.close(fig)
    return "final_vs_pflops.png"


def sample_completions(runs: list[RunFolder], task: str, per_arm: int = 2) -> dict[str, list[dict]]:
    """A few held-out completions per arm: mixed ones first, where there are any."""
    out: dict[str, list[dict]] = {}
    for run in runs:
        arm, seed = run.arm_and_seed()
        if arm in out:
            continue
        path = run.eval_dir("after", task) / "samples.jsonl"
        if path.is_file():
            rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
            rows.sort(key=lambda r: (not r["mixed"], not r["correct"]))
            out[arm] = rows[:per_arm]
    return out


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" if isinstance(v, (tuple, list)) else f"{v:.3g}"


def language_table(runs: list[RunFolder], task: str) -> list[str]:
    """Markdown rows: per run, the language its held-out reasoning is in, before and after training.

    The mixing rate counts any completion with a word outside English; this table shows where the
    reasoning went (English only, Chinese only, or switching), seed by seed.
    """
    rows = ["## Language of the reasoning, per seed", "",
            "Shares of held-out completions reasoning only in English, only in Chinese (other), or switching between them; "
            "`before` is the starting model with the same evaluation seed.", "",
            "| arm | seed | before: en / other / switched | after: en / other / switched |", "|---|---|---|---|"]
    for run in runs:
        arm, seed = run.arm_and_seed()
        before, after = language_composition(run.eval_dir("before"), task), language_composition(run.eval_dir("after"), task)
        fmt = lambda c: "n/a" if c is None else f"{c['target']:.2f} / {c['other']:.2f} / {c['switched']:.2f}"  # noqa: E731
        rows.append(f"| {arm} | {seed} | {fmt(before)} | {fmt(after)} |")
    return rows + [""]


def study_sessions(paths: list[str]) -> list[str]:
    """The wall time of each `rlsft study` invocation that trained runs here (sessions.jsonl)."""
    rows = [json.loads(x) for p in paths if (Path(p) / "sessions.jsonl").is_file()
            for x in (Path(p) / "sessions.jsonl").read_text().splitlines() if x.strip()]
    if not rows:
        return []
    lines = ["## Study wall time", "", "Each `rlsft study` invocation that trained runs (finished runs are skipped, so a resumed "
             "study has several).", "", "| started (UTC) | --jobs | torch threads per run | runs trained | runs skipped | wall min |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['started_utc']} | {r['jobs']} | {r['torch_threads_per_run']} | {r['runs_trained']} | {r['runs_skipped']} | "
              f"{r['wall_seconds'] / 60:.1f} |" for r in rows]
    return lines + [""]


def run_commits(runs: list[RunFolder]) -> dict[str, int]:
    """{git commit: number of runs (stages included)} of the runs a report reads."""
    commits: dict[str, int] = {}
    for run in runs:
        for stage in run.with_earlier_stages:
            c = stage.record.get("provenance", {}).get("git_commit", "unknown")
            commits[c] = commits.get(c, 0) + 1
    return commits


def make_report(paths: list[str], out: str, task: str = "micro-arith", claims=None, title: str | None = None,
                knobs_changed: list[str] | None = None, base_arm: str | None = None, allow_mixed_commits: bool = False) -> Path:
    """Write report.md and its PNGs to `out` (through a temporary folder: never half a report).

    A report's runs must come from one clean commit; `allow_mixed_commits` writes it anyway, with
    the mix at the top."""
    import os
    import shutil
    import tempfile

    from rlsft.analysis.claims import METHOD, evaluate_claim
    from rlsft.runs.provenance import provenance

    runs = RunFolder.find(paths)
    commits = run_commits(runs)
    mixed = len(commits) > 1 or any(c.endswith("-dirty") or c == "unknown" for c in commits)
    if mixed and not allow_mixed_commits:
        raise UserError(f"the runs come from {len(commits)} commit(s) {sorted(commits)}, not one clean commit; "
                        "rerun them from one, or pass --allow-mixed-commits to report the mix")
    results = load_results(runs, task, base_arm)
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".report-", dir=final.parent))
    try:
        curve_files = plot_curves(results, work)
        summary = arm_summary(results)
        final_png = plot_final(summary, work)
        compute_png = plot_accuracy_vs_compute(results, work)
        verdicts = [evaluate_claim(c, results["scores"], results["pflops"], results["compute_curves"]) for c in (claims or [])]
        lines = [f"# {title or 'rlsft report'}", ""]
        if mixed:
            lines += ["**Runs from more than one commit, or a dirty tree** (written with --allow-mixed-commits): "
                      + ", ".join(f"`{c}` ({n} runs)" for c, n in sorted(commits.items())), ""]
        lines += [f"{len(runs)} runs, task `{task}` (held-out test split). Generated by `rlsft report` from the run folders below; "
                  "every number here comes from them.", ""]
        if verdicts:
            lines += ["## Claims", "", "| claim | verdict | estimate [95% CI] | seeds | problems | method | claim text |", "|---|---|---|---|---|---|---|"]
            by_id = {c.id: c for c in claims}
            for v in verdicts:
                c = by_id[v.claim]
                est = "n/a" if v.estimate is None else f"{v.estimate:+.4g}" + ("" if v.ci_low is None else f" [{v.ci_low:+.4g}, {v.ci_high:+.4g}]")
                method = "t over seeds" if v.method == METHOD else v.method
                lines.append(f"| {v.claim} | **{v.verdict}** | {est} | {v.n_seeds} | {v.n_problems} | {method} | {c.text} |")
            lines += ["", "Each estimate is the paired difference (arm minus comparison, same problems per seed) "
                      f"averaged over seeds; the interval is a {METHOD}: the seed is the unit of replication, and one seed "
                      "gives no interval. Matched-compute claims (`at_pflops`) read each arm at its last evaluated checkpoint "
                      "within that compute, never extrapolated. Per-PFLOP claims compare gains over the base model divided by each "
                      "arm's PFLOPs, paired by seed.", ""]
            for v in verdicts:
                lines.append(f"- **{v.claim}** ({by_id[v.claim].metric}, {by_id[v.claim].arm} vs {by_id[v.claim].against}, "
                             f"{by_id[v.claim].direction} than {by_id[v.claim].threshold}): {json.dumps(v.detail, default=lambda x: round(x, 5) if isinstance(x, float) else str(x))}")
            lines.append("")
        if compute_png:
            lines += ["## Accuracy against compute", "", "Held-out pass@1 at each evaluated checkpoint (`eval.curve_steps`) and at the end "
                      "of each stage, against the PFLOPs spent so far (earlier stages and the teacher included); the starting model sits at 0.",
                      "", f"![accuracy against compute]({compute_png})", ""]
        lines += ["## Final results", "", "Mean over seeds with 95% intervals (seeds, then problems, resampled). Train min/run: training wall "
                  "time of all stages, evaluation excluded; runs of one study share a machine, but a shared machine drifts.", "",
                  "| arm | seeds | pass@1 | mixing rate | format rate | length (tokens) | PFLOPs | train min/run |", "|---|---|---|---|---|---|---|---|"]
        for arm, s in sorted(summary.items(), key=lambda kv: (kv[0] != "base", kv[0])):
            minutes = f"{s['minutes']:.1f}" if "minutes" in s else "-"
            lines.append(f"| {arm} | {len(s.get('seeds', []))} | {_fmt(s.get('accuracy'))} | {_fmt(s.get('mixing'))} | "
                         f"{_fmt(s.get('format'))} | {_fmt(s.get('length'))} | {_fmt(s.get('pflops')) if 'pflops' in s else '0 (base)'} | {minutes} |")
        lines += ["", f"![final]({final_png})", ""]
        lines += study_sessions(paths)
        lines += language_table(runs, task)
        lines += ["## Training curves", ""]
        lines += [f"![{f}]({f})" for f in curve_files] + [""]
        lines += ["## Sample completions (held-out, mixed ones first)", ""]
        for arm, rows in sorted(sample_completions(runs, task).items()):
            for r in rows:
                lines.append(f"- **{arm}** (correct={r['correct']}, mixed={r['mixed']}): `{r['question'][:90]}` → `{r['completion'][:300]}`")
        lines += ["", "## Knobs changed after seeing results", ""]
        lines += [f"- {k}" for k in (knobs_changed or [])] or ["- none"]
        prov = provenance()
        lines += ["", "## Provenance", "", f"- report written {prov['time_utc']} at commit `{prov['git_commit']}`",
                  f"- versions: {', '.join(f'{k} {v}' for k, v in prov['versions'].items())}", "- runs:"]
        for run in runs:
            rec = run.record
            lines.append(f"  - `{run.path}`: recipe {rec['recipe']}, commit `{rec['provenance']['git_commit']}`, "
                         f"{rec['compute']['flops'] / 1e15:.4g} PFLOPs, {rec['compute']['wall_seconds']:.0f} s on {rec['compute']['device']}")
        atomic_write(work / "report.md", "\n".join(lines) + "\n")
        atomic_write(work / "verdicts.json", json.dumps([v.__dict__ for v in verdicts], indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(work, final)
        final.chmod(0o755)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
