"""The report's figures, drawn with matplotlib from `rlsft.verdicts.report.load_results`' output
and `arm_summary`'s. Each function writes one PNG into `out` and returns its file name."""

from __future__ import annotations

import re
from pathlib import Path

from rlsft.scoring.rewards import REWARDS
from rlsft.verdicts.claims import claim_interval, discordant_floor, metric_unit


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ax, out: Path, name: str, xlabel: str, ylabel: str, title: str) -> str:
    """Label, grid, legend and title one axis, write the figure to `out/name`, close it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    _pyplot().close(fig)
    return name


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


def curve_keys() -> list[tuple[str, str]]:
    """(metrics.jsonl key, label) of the training curves: one per registered reward (TRL logs
    `rewards/<function name>/mean`), the monitor's mixing rate, length and loss."""
    rewards = [(f"rewards/{fn.__name__}/mean", f"training reward: {name}") for name, fn in REWARDS.items()]
    return rewards + [("rewards/language_monitor/mean", "training mixing rate"),
                      ("completions/mean_length", "completion length (tokens)"), ("loss", "loss")]


def plot_curves(results: dict, out: Path) -> list[str]:
    """Training curves against step and against PFLOPs, one line per arm, seed range shaded."""
    plt = _pyplot()
    files = []
    for key, label in curve_keys():
        arms = {arm: c for arm, c in results["curves"].items() if _band(c, key)}
        if not arms:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for arm, by_seed in sorted(arms.items()):
            steps_total = {s: max([x["step"] for x in v] + [1]) for s, v in by_seed.items()}
            own_pflops = {s: results["records"][arm][s].pflops / steps_total[s] for s in by_seed}
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


def _points(ax, xs, mid, lo, hi, label: str, color: str) -> None:
    """An arm's checkpoints on one axis: a line with a shaded band where it has 3 or more (a
    measured curve), points with error bars where it has fewer."""
    if len(xs) >= 3:
        ax.plot(xs, mid, marker="o", markersize=3, label=label, color=color)
        ax.fill_between(xs, lo, hi, alpha=0.15, color=color)
    else:
        ax.errorbar(xs, mid, yerr=[[m - a for m, a in zip(mid, lo)], [b - m for m, b in zip(mid, hi)]], fmt="o",
                    markersize=4, capsize=3, label=label, color=color)


def _label_panel(ax, row: int, rows: int, title: str) -> None:
    """One panel of a small-multiples grid (a column per question, a row per metric): a grid, the
    column's title and legend on the top row, the compute axis's label on the bottom row."""
    ax.grid(alpha=0.3)
    if row == 0:
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    if row == rows - 1:
        ax.set_xlabel("PFLOPs spent (all stages, teacher sampling included)")


def plot_accuracy_vs_compute(results: dict, out: Path, panels: dict[str, list[str]] | None = None) -> str | None:
    """The main figure, small multiples: one column per question (`panels`: title -> arms, from the
    study's YAML; one column of every arm without), held-out pass@1 (strict, then lenient extraction)
    above and mixing below, against
    PFLOPs spent. Each point is the mean over seeds at an evaluated checkpoint with the 90% interval
    the verdicts use (`claims.claim_interval`, its floor included). A line joins an arm's points only
    where it has 3 or more evaluated checkpoints, so a line is a measured curve; fewer stand as points."""
    plt = _pyplot()
    curves = results["compute_curves"]
    arms = curves.get("accuracy", {})
    if not any(len(points) > 1 for by_seed in arms.values() for points in by_seed.values()):
        return None
    chosen = {title: [a for a in names if a in arms] for title, names in (panels or {"every arm": sorted(arms)}).items()}
    chosen = {title: names for title, names in chosen.items() if names}
    metrics = [(m, label) for m, label in (("accuracy", "held-out pass@1"), ("accuracy_lenient", "held-out pass@1, lenient"),
                                           ("mixing", "held-out mixing rate")) if curves.get(m)]
    fig, axes = plt.subplots(len(metrics), len(chosen), figsize=(4.8 * len(chosen), 3.6 * len(metrics)), sharey="row", squeeze=False)
    colors = {arm: f"C{i % 10}" for i, arm in enumerate(sorted({a for names in chosen.values() for a in names}))}
    for row, (metric, ylabel) in enumerate(metrics):
        for ax, (title, names) in zip(axes[row], chosen.items()):
            for arm in names:
                by_seed = curves[metric].get(arm, {})
                if not by_seed:
                    continue
                n = min(len(points) for points in by_seed.values())
                xs, mid, lo, hi = [], [], [], []
                for i in range(n):
                    per_seed = [sum(by_seed[s][i][1].values()) / len(by_seed[s][i][1]) for s in by_seed]
                    counts = {s: curves.get("samples", {}).get(arm, {}).get(s, [])[i:i + 1] for s in by_seed}  # [(pflops, {id: samples})]
                    units = {s: metric_unit(metric, min(c[0][1].values(), default=0)) if c else 1.0 for s, c in counts.items()}
                    r = claim_interval(per_seed, [discordant_floor(len(by_seed[s][i][1]), units[s]) for s in by_seed], "greater", 0.0)
                    xs.append(sum(by_seed[s][i][0] for s in by_seed) / len(by_seed))
                    mid.append(r["estimate"])
                    lo.append(r["low"] if r["low"] is not None else r["estimate"])
                    hi.append(r["high"] if r["high"] is not None else r["estimate"])
                _points(ax, xs, mid, lo, hi, f"{arm} ({len(by_seed)} seeds)", colors[arm])
            _label_panel(ax, row, len(metrics), title)
        axes[row][0].set_ylabel(f"{ylabel}\n(mean over seeds, 90% interval)")
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_pflops.png", dpi=110)
    plt.close(fig)
    return "accuracy_vs_pflops.png"


def plot_format_length_vs_compute(results: dict, out: Path, panels: dict[str, list[str]] | None = None) -> str | None:
    """Measurements beside the main figure, in its layout: the held-out format rate (R1-Zero's
    `<think>`/`<answer>` form) above and the held-out mean completion length (tokens) below, against
    PFLOPs spent, at the starting model and each evaluated checkpoint. Each point is the mean over
    seeds, shaded (or barred) between the seeds' lowest and highest; no claim reads them."""
    curves = results["compute_curves"]
    arms = {a: by_seed for a, by_seed in curves.get("format", {}).items() if curves.get("length", {}).get(a)}
    if not any(len(points) > 1 for by_seed in arms.values() for points in by_seed.values()):
        return None
    plt = _pyplot()
    chosen = {title: [a for a in names if a in arms] for title, names in (panels or {"every arm": sorted(arms)}).items()}
    chosen = {title: names for title, names in chosen.items() if names}
    metrics = (("format", "held-out format rate"), ("length", "held-out mean length (tokens)"))
    fig, axes = plt.subplots(2, len(chosen), figsize=(4.8 * len(chosen), 7.2), sharey="row", squeeze=False)
    colors = {arm: f"C{i % 10}" for i, arm in enumerate(sorted({a for names in chosen.values() for a in names}))}
    for row, (metric, ylabel) in enumerate(metrics):
        for ax, (title, names) in zip(axes[row], chosen.items()):
            for arm in names:
                by_seed = curves[metric][arm]
                n = min(len(points) for points in by_seed.values())
                xs = [sum(by_seed[s][i][0] for s in by_seed) / len(by_seed) for i in range(n)]
                per_seed = [[sum(by_seed[s][i][1].values()) / len(by_seed[s][i][1]) for s in by_seed] for i in range(n)]
                mid, lo, hi = [sum(v) / len(v) for v in per_seed], [min(v) for v in per_seed], [max(v) for v in per_seed]
                _points(ax, xs, mid, lo, hi, f"{arm} ({len(by_seed)} seeds)", colors[arm])
            _label_panel(ax, row, len(metrics), title)
        axes[row][0].set_ylabel(f"{ylabel}\n(mean over seeds, min-max)")
    fig.tight_layout()
    fig.savefig(out / "format_length_vs_pflops.png", dpi=110)
    plt.close(fig)
    return "format_length_vs_pflops.png"


def plot_final(summary: dict, out: Path) -> str:
    """Held-out accuracy and mixing against PFLOPs per arm, with intervals."""
    plt = _pyplot()
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


def plot_pass_at_k(results: dict, out: Path) -> str | None:
    """Held-out pass@k against k (log scale) for every arm evaluated with 16 or more samples per
    problem (the base model included): mean over seeds, shaded between the seeds' lowest and highest."""
    scores = results["scores"]
    ks = sorted(int(m.split("@")[1]) for m in scores if m.startswith("pass@"))
    arms = sorted({arm for m in scores if m.startswith("pass@") and int(m.split("@")[1]) >= 16 for arm in scores[m]
                   if not arm.startswith("before:")}, key=lambda a: (a != "base", a))
    if not arms:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm in arms:
        pts = []
        for k in [1] + ks:
            by_seed = scores["accuracy" if k == 1 else f"pass@{k}"].get(arm, {})
            per_seed = [sum(v.values()) / len(v) for v in by_seed.values() if v]
            if per_seed:
                pts.append((k, sum(per_seed) / len(per_seed), min(per_seed), max(per_seed)))
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, label=f"{arm} ({len(per_seed)} seeds)")
        ax.fill_between([p[0] for p in pts], [p[2] for p in pts], [p[3] for p in pts], alpha=0.15, color=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_xticks([1] + ks, [str(k) for k in [1] + ks])
    return _save(fig, ax, out, "pass_at_k.png", "k (samples per problem)", "held-out pass@k", "pass@k: mean over seeds, shaded min-max")
