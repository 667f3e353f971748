"""`rlsft report RUNS_OR_STUDY ... --out reports/NAME/`: a Markdown report with PNG plots,
read only from run folders, so any runs can be compared.

Inputs: run folders, or folders holding them (a study, a pipeline), read through `RunFolder`
(which also gives each run's arm and seed); a pipeline is represented by its last stage. The base
model is read from the runs' eval_before.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from rlsft.io import UserError, atomic_write, read_jsonl
from rlsft.runs.folder import RunFolder, config_differences
from rlsft.runs.provenance import provenance
from rlsft.runs.record import RunRecord
from rlsft.scoring.language import reasoning_language
from rlsft.scoring.metrics import pass_at_k, verdicts
from rlsft.verdicts import plots
from rlsft.verdicts.claims import ALPHA, METHOD, MIN_SEEDS, PASS_KS, against_side, evaluate_claim, hierarchical_bootstrap, holm, metric_unit
from rlsft.verdicts.sweep import Choice, choose


def per_problem(folder: Path, task: str) -> dict[str, dict[str, float]]:
    """{metric: {problem_id: value}}: the mean over samples of correct (accuracy), correct_lenient
    (accuracy_lenient: lenient extraction), mixed (mixing), format_ok and length, and pass@k for
    each k in `PASS_KS` up to the samples per problem; `samples` is each problem's sample count.

    A problem with a sample the checker could not verify is left out of that extraction's
    accuracy and pass@k by the rule the run's own summary follows (`metrics.verdicts`). Paired
    claims then read the problems both arms scored."""
    path = folder / task / "samples.jsonl"
    if not path.is_file():
        return {}
    by_id: dict[str, list[dict]] = defaultdict(list)  # problem -> its samples, in the order drawn
    for s in read_jsonl(path):
        by_id[s["id"]].append(s)
    strict = {i: v for i, samples in by_id.items() if (v := verdicts(samples)) is not None}
    lenient = {i: v for i, samples in by_id.items() if (v := verdicts(samples, "correct_lenient")) is not None}
    out = {name: {i: sum(v) / len(v) for i, v in scored.items()} for name, scored in (("accuracy", strict), ("accuracy_lenient", lenient)) if scored}
    for key, name in (("mixed", "mixing"), ("format_ok", "format"), ("length", "length")):
        values = {i: [float(s[key]) for s in samples if s.get(key) is not None] for i, samples in by_id.items()}
        if any(values.values()):
            out[name] = {i: sum(v) / len(v) for i, v in values.items() if v}
    out["samples"] = {i: float(len(samples)) for i, samples in by_id.items()}  # per problem: the step of the claims' floor
    n = min((len(v) for v in strict.values()), default=0)
    out.update({f"pass@{k}": {i: pass_at_k(len(v), sum(v), k) for i, v in strict.items()} for k in PASS_KS if k <= n})
    return out


def teacher_run(run: RunFolder) -> RunFolder | None:
    """The training run of a distillation run's teacher, when the teacher is a model a lab run
    trained (`<run>/model`); None for shipped or hub teachers, whose training is not the lab's."""
    for stage in run.with_earlier_stages:
        teacher = stage.run_record.teacher
        if teacher and Path(teacher).name == "model" and RunFolder(Path(teacher).parent).finished:
            return RunFolder(Path(teacher).parent)
    return None


def language_composition(folder: Path, task: str) -> dict[str, float] | None:
    """Shares of a run's held-out completions that reason only in the target language, only in
    another, or switch between them (see `rlsft.scoring.language.reasoning_language`); None without samples."""
    path = folder / task / "samples.jsonl"
    if not path.is_file():
        return None
    kinds = [reasoning_language(s["completion"]) for s in read_jsonl(path)]
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
    records: dict[str, dict[int, RunRecord]] = defaultdict(dict)
    folders: dict[str, dict[int, RunFolder]] = defaultdict(dict)
    compute_curves: dict = defaultdict(lambda: defaultdict(dict))  # metric -> arm -> seed -> [(pflops, {problem: value})]
    teachers: dict[str, RunFolder] = {}  # arm -> its teacher's training run
    forms: dict[str, set[str]] = defaultdict(set)  # side -> the prompt forms its evaluations gave the model (`prompt_form`)
    for run in runs:
        arm, seed = run.arm_and_seed()
        records[arm][seed] = run.run_record
        first = run.with_earlier_stages[0].run_record
        forms[arm].add(prompt_form(run.run_record))
        forms[f"before:{arm}"].add(prompt_form(first))
        folders[arm][seed] = run
        for metric, values in per_problem(run.eval_dir("after"), task).items():
            scores[metric][arm][seed] = values
        before = per_problem(run.with_earlier_stages[0].eval_dir("before"), task)
        for metric, values in before.items():
            scores[metric][f"before:{arm}"][seed] = values  # the arm's own starting model
            if run.is_first_stage_or_run and (base_arm is None or arm == base_arm):
                if seed not in scores[metric].get("base", {}):
                    forms["base"].add(prompt_form(first))  # the form of the run the base's scores come from
                scores[metric].setdefault("base", {}).setdefault(seed, values)
        teacher = teacher_run(run)
        if teacher:
            teachers[arm] = teacher
        cost = run.total_compute()
        pflops[arm][seed] = cost["flops"] / 1e15
        minutes[arm][seed] = cost["wall_seconds"] / 60
        curves[arm][seed] = run.metrics
        for pflop, metric_scores in compute_curve(run, task):
            for metric, values in metric_scores.items():
                compute_curves[metric][arm].setdefault(seed, []).append((pflop, values))
    return {"scores": scores, "pflops": pflops, "minutes": minutes, "curves": curves, "records": records, "folders": folders,
            "compute_curves": compute_curves, "teachers": teachers, "forms": dict(forms),
            "teacher_pflops": {arm: t.run_record.pflops for arm, t in teachers.items()}}


def prompt_form(record: RunRecord) -> str:
    """How a run's evaluations prompted the model: its prompt form and whether `<think>` was
    prefilled (`data.template`, `data.think_prefill`); the same for its evaluation before training
    and after it. Scores read under two forms do not compare as a recipe's effect.

    >>> rec = RunRecord.from_json({"config": {"data": {"template": "r1-zero", "think_prefill": True}}})
    >>> prompt_form(rec)
    'r1-zero, <think> prefilled'
    """
    return record.template + (", <think> prefilled" if record.think_prefill else "")


def form_mismatches(verdicts: list, by_id: dict, forms: dict[str, set[str]]) -> list[str]:
    """A line for each claim whose two sides were evaluated under different prompt forms."""
    lines = []
    for v in verdicts:
        c = by_id[v.claim]
        if c.against is None:
            continue
        a, b = forms.get(c.arm, set()), forms.get(against_side(c), set())
        if a and b and a != b:
            lines += [f"**{v.claim} compares sides evaluated under different prompt forms**: {c.arm} under {' / '.join(sorted(a))}, "
                      f"{c.against} under {' / '.join(sorted(b))}; its estimate holds the prompt form's effect as well as the "
                      "recipes'.", ""]
    return lines


def compute_curve(run: RunFolder, task: str) -> list[tuple[float, dict[str, dict[str, float]]]]:
    """The held-out scores of a run (and of its pipeline's earlier stages) against the PFLOPs spent
    to reach them: the starting model at 0, each curve checkpoint, and each stage's trained model.
    [(pflops, {metric: {problem_id: value}})], read from the folders `rlsft eval` wrote."""
    points, offset = [], 0.0
    for i, stage in enumerate(run.with_earlier_stages):
        if i == 0 and stage.eval_dir("before", task).is_dir():
            points.append((0.0, per_problem(stage.eval_dir("before"), task)))
        for pt in stage.run_record.curve:
            folder = stage.eval_dir("after") if pt["step"] == "final" else stage.curve_dir(pt["step"], task).parent
            if (folder / task).is_dir():
                points.append((offset + pt["pflops"], per_problem(folder, task)))
        offset += stage.run_record.pflops
    return [p for p in points if p[1]]




def arm_summary(results: dict, n_boot: int = 1000) -> dict[str, dict]:
    """Per arm (and base): mean over seeds of held-out accuracy, mixing, format and length, each
    with a 95% hierarchical bootstrap interval (seeds, then problems), plus mean PFLOPs and training
    wall minutes per run."""
    summary: dict[str, dict] = defaultdict(dict)
    for metric in ("accuracy", "accuracy_lenient", "mixing", "format", "length"):
        for arm, by_seed in results["scores"].get(metric, {}).items():
            if arm.startswith("before:"):
                continue
            data = {s: list(v.values()) for s, v in by_seed.items() if v}
            if data:
                summary[arm][metric] = hierarchical_bootstrap(data, n_boot)
                summary[arm]["seeds"] = sorted(data)
    for arm, by_seed in results["pflops"].items():
        summary[arm]["pflops"] = sum(by_seed.values()) / len(by_seed)
    for arm, by_seed in results.get("minutes", {}).items():
        summary[arm]["minutes"] = sum(by_seed.values()) / len(by_seed)
    return dict(summary)

def sample_completions(runs: list[RunFolder], task: str, per_arm: int = 2, base_arm: str | None = None) -> dict[str, list[dict]]:
    """A few held-out completions per arm, and of the base (the starting model, read as
    `load_results` reads it): mixed ones first, where there are any."""
    out: dict[str, list[dict]] = {}
    for run in runs:
        arm, seed = run.arm_and_seed()
        for name, folder in ((arm, run.eval_dir("after", task)), ("base", run.with_earlier_stages[0].eval_dir("before", task))):
            if name in out or (name == "base" and not (run.is_first_stage_or_run and base_arm in (None, arm))):
                continue
            if (folder / "samples.jsonl").is_file():
                rows = read_jsonl(folder / "samples.jsonl")
                rows.sort(key=lambda r: (not r["mixed"], not r["correct"]))
                out[name] = rows[:per_arm]
    return out


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" if isinstance(v, (tuple, list)) else f"{v:.3g}"


def _composition_cell(c: dict | None) -> str:
    return "n/a" if c is None else f"{c['target']:.2f} / {c['other']:.2f} / {c['switched']:.2f}"


def language_tables(runs: list[RunFolder], task: str) -> tuple[list[str], list[str]]:
    """Markdown: the language held-out reasoning is in, before and after training, as (per arm,
    mean over seeds; per seed). The mixing rate counts any completion with a word outside English;
    these show where the reasoning went: English only, Chinese only, or switching."""
    per_seed = ["### Language of the reasoning, per seed", "", "| arm | seed | before: en / other / switched | after: en / other / switched |",
                "|---|---|---|---|"]
    by_arm: dict[str, list[tuple[dict | None, dict]]] = defaultdict(list)
    for run in runs:
        arm, seed = run.arm_and_seed()
        before = language_composition(run.with_earlier_stages[0].eval_dir("before"), task)
        after = language_composition(run.eval_dir("after"), task)
        per_seed.append(f"| {arm} | {seed} | {_composition_cell(before)} | {_composition_cell(after)} |")
        if after:
            by_arm[arm].append((before, after))
    mean = lambda cs: {k: sum(c[k] for c in cs) / len(cs) for k in cs[0]} if cs and None not in cs else None  # noqa: E731
    per_arm = ["## Language of the reasoning", "", "Shares of held-out completions reasoning only in English, only in Chinese (other), "
               "or switching between them, mean over seeds; `before` is each arm's starting model with the same evaluation seeds. "
               "Per seed: see Details.", "", "| arm | seeds | before: en / other / switched | after: en / other / switched |", "|---|---|---|---|"]
    per_arm += [f"| {arm} | {len(pairs)} | {_composition_cell(mean([b for b, _ in pairs]))} | {_composition_cell(mean([a for _, a in pairs]))} |"
                for arm, pairs in sorted(by_arm.items())]
    return per_arm + [""], per_seed + [""]


def _metric_cell(metrics: dict, key: str) -> str:
    m = metrics.get(key, {})
    return _fmt((m["value"], m["ci_low"], m["ci_high"])) if m.get("ci_low") is not None else _fmt(m.get("value"))


def transfer_tables(runs: list[RunFolder], base_arm: str | None = None) -> list[str]:
    """Markdown: the study's `transfer:` measurements (each arm's final model and the base on
    another task, after the runs), one row per arm and seed, with 95% intervals over problems."""
    rows: dict[str, list[tuple[str, int, dict]]] = defaultdict(list)  # task -> (arm, seed, metrics.json)
    for run in runs:
        arm, seed = run.arm_and_seed()
        found = [(arm, f) for f in (run.path / "eval_transfer").glob("*/metrics.json")]
        if run.is_first_stage_or_run and (base_arm is None or arm == base_arm):
            found += [("base", f) for f in (run.path / "eval_transfer_before").glob("*/metrics.json")]
        for who, f in found:
            rows[f.parent.name].append((who, seed, json.loads(f.read_text())))
    lines = []
    for task, entries in sorted(rows.items()):
        m0 = entries[0][2]
        lines += [f"## Transfer to {task}", "", f"A measurement after the runs, not a claim: {m0['n_problems']} problems of its "
                  f"{m0['split']} split x {m0['samples_per_problem']} samples, up to {m0['max_new_tokens']} new tokens, the runs' prompt form; "
                  "95% intervals over problems (one seed says nothing about seed-to-seed spread).", "",
                  "| arm | seed | pass@1 (strict) | pass@1 (lenient) | format rate | cut off at the budget |", "|---|---|---|---|---|---|"]
        for who, seed, m in sorted(entries, key=lambda e: (e[0] != "base", e[0], e[1])):
            cells = [_metric_cell(m["metrics"], key) for key in ("pass@1", "pass@1_lenient", "format_rate", "truncation_rate")]
            lines.append(f"| {who} | {seed} | {' | '.join(cells)} |")
        lines.append("")
    return lines


def cost_table(results: dict) -> list[str]:
    """Markdown: what each arm's compute includes, with its teacher's training unamortised and
    amortised over the students trained from that teacher here."""
    about = "PFLOPs per run (all stages, teacher sampling included)."
    formulas = sorted({stage.run_record.compute.flops_formula for by_seed in results["folders"].values() for run in by_seed.values()
                       for stage in run.with_earlier_stages} | {t.run_record.compute.flops_formula for t in results["teachers"].values()})
    if len(formulas) == 1:
        about += f" FLOPs as the records count them: {formulas[0]}."
    else:  # runs of different lab versions: their FLOPs do not compare
        about += " **These records count FLOPs in different ways, so their PFLOPs do not compare**: " + "; ".join(formulas) + "."
    if results["teachers"]:
        about += (" A distillation arm's teacher was trained by the lab once; its training is shown in full (unamortised) and shared "
                  "among the student runs of this report that use it.")
    if any(stage.run_record.recipe == "sft" for by_seed in results["folders"].values() for run in by_seed.values()
           for stage in run.with_earlier_stages):
        about += " The micro world's clean SFT solutions (cold starts, hybrid) are generated by code: that data costs no model FLOPs."
    lines = ["### Costs", "", about, "",
             "| arm | PFLOPs per run | teacher training PFLOPs | with teacher, unamortised | students sharing it | with teacher, amortised |",
             "|---|---|---|---|---|---|"]
    students: dict[str, int] = defaultdict(int)
    for arm, t in results["teachers"].items():
        students[str(t.path)] += len(results["pflops"][arm])
    for arm, by_seed in sorted(results["pflops"].items()):
        own = sum(by_seed.values()) / len(by_seed)
        t = results["teachers"].get(arm)
        if t is None:
            lines.append(f"| {arm} | {own:.4g} | - | {own:.4g} | - | {own:.4g} |")
            continue
        tp, n = results["teacher_pflops"][arm], students[str(t.path)]
        lines.append(f"| {arm} | {own:.4g} | {tp:.4g} (`{t.path}`) | {own + tp:.4g} | {n} | {own + tp / n:.4g} |")
    return lines + [""]


def study_sessions(paths: list[str]) -> list[str]:
    """The wall time of each `rlsft study` invocation that trained runs here (sessions.jsonl: a
    line when it starts, another when it ends; one without an end was interrupted), and the other
    invocations it certainly ran beside, whose runs shared the machine and lengthened its runs' wall times."""
    latest: dict[tuple, dict] = {}  # (study folder, started) -> the invocation's last line
    for p in paths:
        if (Path(p) / "sessions.jsonl").is_file():
            for row in read_jsonl(Path(p) / "sessions.jsonl"):
                latest[(p, row["started_utc"])] = row
    if not latest:
        return []
    lines = ["## Study wall time", "", "Each `rlsft study` invocation that trained runs (finished runs are skipped, so a resumed "
             "study has several; an interrupted one's runs resume from their checkpoints in the next). *Beside*: the invocations "
             "it certainly overlapped (an interrupted one's end is unknown, so only those that started before it and outlived "
             "its start count); their runs shared the machine's cores.", "",
             "| started (UTC) | --jobs | torch threads per run | runs to train | runs skipped | wall min | beside (started) |",
             "|---|---|---|---|---|---|---|"]
    for (p, _), r in latest.items():
        beside = [o["started_utc"] for (q, _), o in latest.items() if q == p and o is not r and overlapped(r, o)]
        lines.append(f"| {r['started_utc']} | {r['jobs']} | {r['torch_threads_per_run']} | {r['runs_trained']} | {r['runs_skipped']} | "
                     + ("interrupted" if r.get("wall_seconds") is None else f"{r['wall_seconds'] / 60:.1f}") + f" | {', '.join(beside) or '-'} |")
    return lines + [""]


def overlapped(a: dict, b: dict) -> bool:
    """Did two study invocations (sessions.jsonl lines) certainly run at the same time? Each is
    taken to end at its start plus its wall seconds; an interrupted one (no wall seconds) at its
    start, the earliest it can have ended.

    >>> a = {"started_utc": "2026-11-30T20:00:00Z", "wall_seconds": 3600.0}
    >>> b = {"started_utc": "2026-11-30T20:30:00Z", "wall_seconds": None}
    >>> c = {"started_utc": "2026-11-30T19:00:00Z", "wall_seconds": None}
    >>> overlapped(a, b), overlapped(b, a), overlapped(a, c), overlapped(b, c)
    (True, True, False, False)
    """

    def span(r):
        start = datetime.strptime(r["started_utc"], "%Y-%m-%dT%H:%M:%SZ").timestamp()
        return start, start + (r.get("wall_seconds") or 0.0)

    (s1, e1), (s2, e2) = span(a), span(b)
    return (s1 <= s2 < e1) or (s2 <= s1 < e2)


def readme_table(verdicts: list, by_id: dict) -> str:
    """The claims as the README shows them (and tests/test_readme_results.py checks): claim and
    text, verdict, Holm's verdict, estimate with its 90% interval to three decimals, seeds.

    >>> from rlsft.verdicts.claims import Claim, Verdict
    >>> c = Claim("C1", "RL helps", "accuracy", "rl", "base", "greater")
    >>> print(readme_table([Verdict("C1", "reproduced", 0.12749, 0.1, 0.15, 8, 256, verdict_holm="reproduced")], {"C1": c}), end="")
    | claim | verdict | Holm | estimate [90% CI] | seeds |
    |---|---|---|---|---|
    | C1 RL helps | reproduced | reproduced | +0.127 [+0.100, +0.150] | 8 |
    """
    lines = ["| claim | verdict | Holm | estimate [90% CI] | seeds |", "|---|---|---|---|---|"]
    for v in verdicts:
        est = "n/a" if v.estimate is None else f"{v.estimate:+.3f}" + ("" if v.ci_low is None else f" [{v.ci_low:+.3f}, {v.ci_high:+.3f}]")
        est += _own_level(v)
        lines.append(f"| {v.claim} {by_id[v.claim].text} | {v.verdict} | {v.verdict_holm} | {est} | {v.n_seeds} |")
    return "\n".join(lines) + "\n"


CHECKPOINT_COLUMNS = (("pass@1_lenient", "pass@1 lenient", ".3f"), ("format_rate", "format rate", ".3f"),
                      ("mixing_rate", "mixing rate", ".3f"), ("wordless_rate", "no words", ".3f"), ("mean_length", "length (tokens)", ".1f"),
                      ("truncation_rate", "cut off", ".3f"))  # (figure, column, format): `checkpoint_figures`


def checkpoint_figures(folder: Path) -> dict[str, float]:
    """A checkpoint's figures for its table row: the values in its metrics.json, and `wordless_rate`,
    the share of its completions with no words at all (numbers, symbols or nothing: no language to
    mix, so they count as not mixed, and a mixing rate falls as completions lose their words), from
    its samples.jsonl, where their `language_consistency` is None. {} where the folder has neither.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "samples.jsonl").write_text('{"language_consistency": 1.0}\\n{"language_consistency": null}\\n')
    >>> checkpoint_figures(d)
    {'wordless_rate': 0.5}
    """
    out = {}
    if (folder / "metrics.json").is_file():
        out = {key: m["value"] for key, m in json.loads((folder / "metrics.json").read_text())["metrics"].items()
               if isinstance(m, dict) and "value" in m}
    if (folder / "samples.jsonl").is_file():
        samples = read_jsonl(folder / "samples.jsonl")
        if samples and all("language_consistency" in x for x in samples):
            out["wordless_rate"] = sum(x["language_consistency"] is None for x in samples) / len(samples)
    return out


def checkpoint_table(results: dict, task: str = "micro-arith") -> list[str]:
    """Held-out pass@1 (strict and lenient), format rate, mixing, mean length and the share cut off
    at the token budget, at each evaluated checkpoint of each arm (its last stage's curve and end),
    mean over seeds: where a sweep reads the step count it chooses, and the format and length
    curves as numbers. A cell is n/a where a seed's evaluation lacks the figure."""
    rows = []
    for arm, by_seed in sorted(results["records"].items()):
        steps: dict = defaultdict(list)
        for seed, record in by_seed.items():
            run = results.get("folders", {}).get(arm, {}).get(seed)
            for pt in record.curve:
                folder = None if run is None else run.eval_dir("after", task) if pt["step"] == "final" else run.curve_dir(pt["step"], task)
                figures = checkpoint_figures(folder) if folder is not None else {}
                steps[pt["step"]].append((pt["pflops"], pt["pass@1"], [figures.get(key) for key, _, _ in CHECKPOINT_COLUMNS]))
        for step, values in sorted(steps.items(), key=lambda kv: (kv[0] == "final", kv[0] if kv[0] != "final" else 0)):
            cells = []
            for j, (_, _, fmt) in enumerate(CHECKPOINT_COLUMNS):
                got = [v[2][j] for v in values if v[2][j] is not None]
                cells.append(format(sum(got) / len(got), fmt) if len(got) == len(values) else "n/a")
            rows.append(f"| {arm} | {step} | {len(values)} | {sum(v[0] for v in values) / len(values):.4g} | "
                        f"{sum(v[1] for v in values) / len(values):.3f} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    header = "| arm | step | seeds | PFLOPs | pass@1 | " + " | ".join(c for _, c, _ in CHECKPOINT_COLUMNS) + " |"
    return ["### Evaluated checkpoints", "", "Held-out figures at each checkpoint of each run's last stage (mean over seeds): pass@1 with "
            "strict and lenient extraction, the format rate, mixing, the share of completions with no words (numbers or symbols only: "
            "nothing to mix, so a mixing rate also falls when completions lose their words), the mean completion length and the share "
            "cut off at the token budget.", "", header, "|---" * (5 + len(CHECKPOINT_COLUMNS)) + "|", *rows, ""]


def sweep_candidates(results: dict, task: str, metrics: tuple[str, ...]) -> dict[str, dict[str, dict[int, dict[str, float]]]]:
    """Every evaluated checkpoint of every arm as a sweep candidate, for each of `metrics`:
    metric -> `arm@step` -> {seed: {problem_id: value}}; the end of a run is named by its step count
    (`training.max_steps`) where it has one. Each checkpoint's samples are read once."""
    out: dict[str, dict[str, dict[int, dict[str, float]]]] = {m: defaultdict(dict) for m in metrics}
    for arm, by_seed in sorted(results["folders"].items()):
        for seed, run in by_seed.items():
            last = run.run_record.max_steps or "final"
            for pt in run.run_record.curve:
                folder = run.eval_dir("after") if pt["step"] == "final" else run.curve_dir(pt["step"], task).parent
                scores = per_problem(folder, task)
                for m in metrics:
                    if values := scores.get(m):
                        out[m][f"{arm}@{last if pt['step'] == 'final' else pt['step']}"][seed] = values
    return {m: dict(by_candidate) for m, by_candidate in out.items()}


def sweep_section(results: dict, rule, task: str) -> tuple[list[str], Choice]:
    """The report's "Sweep choice": the preregistered rule (`rlsft.verdicts.sweep`) applied to every
    checkpoint of every arm against the base, a line saying what it picks and why, and the table."""
    base = results["scores"].get(rule.metric, {}).get("base", {})
    # the floor's step: one sample of the coarser side, the base's or a candidate's (a curve point may draw fewer)
    candidates = sweep_candidates(results, task, ("samples", rule.metric))
    counts = [results["scores"].get("samples", {}).get("base", {}), *candidates["samples"].values()]
    unit = metric_unit(rule.metric, min((min(c.values()) for by_seed in counts for c in by_seed.values() if c), default=0))
    choice = choose(rule, candidates[rule.metric], base, unit)
    rows = [f"| {r['candidate']} | {r['estimate']:+.4f} | [{r['low']:+.4f}, {r['high']:+.4f}] | {'yes' if r['separates'] else 'no'} |"
            if r["estimate"] is not None else f"| {r['candidate']} | missing: no seed shared with the base | | no |" for r in choice.rows]
    lines = ["## Sweep choice", "", f"Rule (the study's `choose:`, written before the runs): a candidate separates from the base when the "
             f"low end of its 90% interval on {rule.metric} is above 0; the best that separates wins, ties within {rule.margin} go "
             f"to the first in `prefer` ({', '.join(rule.prefer) or 'none'}); when none separates, the fallback "
             f"({rule.fallback or 'none written'}) applies.", "", f"**{choice.line}.**", "",
             "| candidate | minus base | 90% interval | separates |", "|---|---|---|---|", *rows, ""]
    return lines, choice


def run_commits(runs: list[RunFolder]) -> dict[str, int]:
    """{git commit: number of runs (stages included) with a sitting at it} of the runs a report
    reads: a run resumed at another commit counts at both."""
    commits: dict[str, int] = {}
    for run in runs:
        for stage in run.with_earlier_stages:
            for c in stage.commits:
                commits[c] = commits.get(c, 0) + 1
    return commits


def _method(claim, verdict) -> str:
    """The headline's method cell: the interval and what was compared."""
    how = (verdict.test or "t") + ", t over seeds" if verdict.method == METHOD else verdict.method
    if claim.at_pflops is not None:
        how += f", at {claim.at_pflops}'s PFLOPs" if isinstance(claim.at_pflops, str) else f", at {claim.at_pflops:g} PFLOPs"
        if claim.teacher_students:
            how += ", teacher " + ("unamortised" if claim.teacher_students == 1 else f"amortised over {claim.teacher_students}")
    if claim.per_pflop:
        how += ", gain per PFLOP"
    return how


def _own_level(v) -> str:
    """A claim tested at its own `alpha`: its interval's level beside the estimate (the column says the
    study's); Holm's column stays at the study's level."""
    return f" ({v.interval} CI, alpha {v.level})" if v.ci_low is not None and v.level not in (None, ALPHA) else ""


def claims_section(verdicts: list, by_id: dict, forms: dict[str, set[str]] | None = None) -> list[str]:
    """The report's headline: one row per claim, then its pilots, unmatched and short-armed claims,
    and those whose sides were evaluated under different prompt forms."""
    lines: list[str] = []
    level = f"{1 - 2 * ALPHA:.0%}"
    lines += ["## Claims", "", f"| claim | verdict | Holm | estimate [{level} CI] | seeds | test | claim text |", "|---|---|---|---|---|---|---|"]
    for v in verdicts:
        est = "n/a" if v.estimate is None else f"{v.estimate:+.4g}" + ("" if v.ci_low is None else f" [{v.ci_low:+.4g}, {v.ci_high:+.4g}]")
        est += _own_level(v)
        lines.append(f"| {v.claim} | **{v.verdict}** | {v.verdict_holm} | {est} | {v.n_seeds} | {_method(by_id[v.claim], v)} | "
                     f"{by_id[v.claim].text} |")
    pilot = [v.claim for v in verdicts if v.verdict == "pilot"]
    unmatched = [v for v in verdicts if v.verdict == "unmatched"]
    lines += ["", "Estimate: arm minus comparison, paired by problem within each seed, averaged over seeds. Verdict: each claim's "
              f"own test at {ALPHA:.0%}; Holm: the same with Holm's step-down correction across the "
              f"{sum(v.p_holm is not None for v in verdicts)} tested claims (family-wise error at 5%, on the test each verdict "
              "rests on: the claim's side for reproduced, the other side for not reproduced). The prose of this report and of the README reads the per-claim verdict and names any "
              "claim whose Holm verdict differs. Decision rules and each claim's detail: see Details.", ""]
    if pilot:
        lines += [f"**Pilot**: {', '.join(pilot)} rest on fewer than {MIN_SEEDS} seeds; they show estimates and no verdict.", ""]
    for v in unmatched:
        lines += [f"**{v.claim} is unmatched**: {v.detail['why']}. Its estimate compares unequal compute; it has no verdict.", ""]
    for v in verdicts:
        if "short" in v.detail:
            lines += [f"**{v.claim}** is read with one arm short of its budget: {v.detail['short']}.", ""]
    return lines + form_mismatches(verdicts, by_id, forms or {})


def claim_details(verdicts: list, by_id: dict) -> list[str]:
    """The decision rules in words and each claim's detail (the Details section)."""
    lines: list[str] = []
    lines += ["### Claims: decision rules and detail", "", f"Intervals: {METHOD}, {1 - 2 * ALPHA:.0%} two-sided; the seed is the "
              f"unit of replication, one seed gives no interval and fewer than {MIN_SEEDS} no verdict (a pilot). `greater`/`less`: a "
              f"one-sided t test at {ALPHA:.0%}: reproduced when the whole interval lies beyond the threshold in the claimed "
              "direction, not reproduced when wholly on the other side (a negative threshold states non-inferiority: at or "
              "above, within a margin). `within`: TOST at 5%, reproduced when the whole interval lies inside "
              "(-threshold, +threshold). Matched-compute claims (`at_pflops`) read each arm at its last evaluated checkpoint "
              "within that compute, never extrapolated; `teacher_students` adds the teacher's training, divided by that many "
              "students. `before`: the arm's own starting model.", ""]
    for v in verdicts:
        c = by_id[v.claim]
        p = "" if v.p_value is None else (f"p = {v.p_value:.3g}" + ("" if v.p_against is None else f" (other side {v.p_against:.3g})")
                                          + ("" if v.p_holm is None else f", Holm-adjusted {v.p_holm:.3g}") + "; ")
        lines.append(f"- **{v.claim}** ({c.metric}, {c.arm} vs {c.against}, {c.direction} {c.threshold}; {v.n_problems} problems; {p}"
                     f"{v.test}): "
                     f"{json.dumps(v.detail, default=lambda x: round(x, 5) if isinstance(x, float) else str(x))}")
    lines.append("")
    return lines


def provenance_section(runs: list[RunFolder], results: dict, knobs_changed: list[str] | None) -> list[str]:
    """Knobs changed after results, then where the report and every run it read came from."""
    lines = ["", "### Knobs changed after seeing results", ""]
    lines += [f"- {k}" for k in (knobs_changed or [])] or ["- none"]
    prov = provenance()
    lines += ["", "### Provenance", "", f"- report written {prov['time_utc']} at commit `{prov['git_commit']}`",
              f"- versions: {', '.join(f'{k} {v}' for k, v in prov['versions'].items())}"]
    for arm, t in sorted(results["teachers"].items()):
        lines.append(f"- teacher of {arm}: `{t.path}`, commit `{t.run_record.git_commit}`, "
                     f"{t.run_record.pflops:.4g} PFLOPs, {t.run_record.compute.wall_seconds:.0f} s")
    lines.append("- runs:")
    for run in runs:
        rec = run.run_record
        earlier = ", ".join(f"`{c}`" for c in run.commits if c != rec.git_commit)
        sittings = f" (earlier sittings at {earlier})" if earlier else ""
        lines.append(f"  - `{run.path}`: recipe {rec.recipe}, commit `{rec.git_commit}`{sittings}, "
                     f"{rec.pflops:.4g} PFLOPs, {rec.compute.wall_seconds:.0f} s on {rec.compute.device}")
    return lines


def header_lines(title: str | None, runs: list[RunFolder], task: str, results: dict, commits: dict[str, int], mixed: bool) -> list[str]:
    """The title, a mix of commits when there is one, what the report read, and its prerequisites."""
    lines = [f"# {title or 'rlsft report'}", ""]
    if mixed:
        lines += ["**Runs from more than one commit, or a dirty tree** (written with --allow-mixed-commits): "
                  + ", ".join(f"`{c}` ({n} runs)" for c, n in sorted(commits.items())), ""]
    for arm, stage, keys in config_mismatches(results):
        lines += [f"**The seeds of arm {arm} ran different configs** (stage {stage}): they differ at {', '.join(keys[:6])}"
                  f"{' and more' if len(keys) > 6 else ''}; its interval mixes them.", ""]
    splits = sorted({run.run_record.eval_split for run in runs})
    lines += [f"{len(runs)} runs, task `{task}` (held-out {' and '.join(splits)} split). Generated by `rlsft report` from the run "
              "folders listed under Provenance; every number here comes from them.", ""]
    prerequisites = sorted({(str(t.path), t.run_record.git_commit)
                            for t in results["teachers"].values()})
    if prerequisites:
        lines += ["Prerequisites (trained once, read by the arms above, outside the one-commit check): "
                  + ", ".join(f"`{path}` at `{commit}`" for path, commit in prerequisites) + ".", ""]
    return lines


def config_mismatches(results: dict) -> list[tuple[str, int, list[str]]]:
    """(arm, stage, dotted keys) where the seeds of an arm ran different configs: a study whose
    YAML or overrides changed after some of its runs had finished. Each run's saved config.yaml is
    compared, stage by stage, less what differs by design: its `run` section (name, seed, folder)
    and a later stage's `model.name` (the previous stage's own output). The number of processes the
    stage trained on (`launch.processes`, from run.json) is compared too: TRL's batch sizes are per
    process, so `cluster.gpus_per_run` multiplies a step's completions."""

    def comparable(stage: RunFolder, index: int) -> dict:
        config = {k: v for k, v in stage.config.items() if k != "run"}
        if index and isinstance(config.get("model"), dict):
            config["model"] = {k: v for k, v in config["model"].items() if k != "name"}
        if stage.finished:
            config["launch"] = {"processes": stage.record.get("compute", {}).get("processes", 1)}
        return config

    out = []
    for arm, by_seed in sorted(results["folders"].items()):
        stages = {seed: run.with_earlier_stages for seed, run in sorted(by_seed.items())}
        first = next(iter(stages.values()))
        for index in range(len(first)):
            configs = [comparable(s[index], index) for s in stages.values() if len(s) > index and s[index].config_file.is_file()]
            keys = sorted({k for c in configs[1:] for k in config_differences(configs[0], c)})
            if keys:
                out.append((arm, index + 1, keys))
    return out


def figures_section(compute_png: str | None, passk_png: str | None, format_png: str | None = None, panels: bool = True) -> list[str]:
    """The report's figures with what they show: accuracy against compute, the format rate and
    length against compute (measurements), and pass@k. `panels`: the study's YAML has `panels:`."""
    lines: list[str] = []
    columns = "One column per question (the study's `panels:`)" if panels else "One column, every arm"
    if compute_png:
        lines += ["## Accuracy against compute", "", "Held-out pass@1 at each evaluated checkpoint (`eval.curve_steps`) and at the end "
                  "of each stage, against the PFLOPs spent so far (earlier stages and teacher sampling included, the teacher's own "
                  f"training not: see Costs); the starting model (a study's base) sits at 0. {columns}, "
                  "pass@1 with strict extraction, then lenient (an answer in prose counts too), then mixing; the mean over seeds with "
                  "the 90% interval the verdicts use, whose floor is wider at a checkpoint evaluated with fewer samples "
                  "(`eval.curve_samples`). A line joins an arm's points only where it has three or more "
                  "evaluated checkpoints; with fewer, its points stand alone.", "", f"![accuracy against compute]({compute_png})", ""]
    if format_png:
        lines += ["## Format and length against compute", "", "Measurements, not claims, on the same held-out samples and in the same "
                  f"layout: the rate of completions in R1-Zero's `<think>`/`<answer>` form, and the mean completion length in tokens. "
                  f"{columns}; the mean over seeds, shaded between the seeds' lowest and highest.", "",
                  f"![format and length against compute]({format_png})", ""]
    if passk_png:
        lines += ["## pass@k", "", "Held-out pass@k (unbiased estimate from each problem's samples) for the arms evaluated with 16 "
                  "or more samples per problem.", "", f"![pass@k]({passk_png})", ""]
    return lines


def final_table(summary: dict, final_png: str) -> list[str]:
    """Per arm, the mean over seeds of each held-out metric with its 95% interval, compute and train time."""
    lines: list[str] = []
    lines += ["### Final results", "", "Mean over seeds with 95% intervals (seeds, then problems, resampled). Train min/run: training wall "
              "time of all stages, evaluation excluded; runs of one study share a machine, but a shared machine drifts.", "",
              "| arm | seeds | pass@1 | pass@1 lenient | mixing rate | format rate | length (tokens) | PFLOPs | train min/run |",
              "|---|---|---|---|---|---|---|---|---|"]
    for arm, s in sorted(summary.items(), key=lambda kv: (kv[0] != "base", kv[0])):
        minutes = f"{s['minutes']:.1f}" if "minutes" in s else "-"
        lines.append(f"| {arm} | {len(s.get('seeds', []))} | {_fmt(s.get('accuracy'))} | {_fmt(s.get('accuracy_lenient'))} | {_fmt(s.get('mixing'))} | "
                     f"{_fmt(s.get('format'))} | {_fmt(s.get('length'))} | {_fmt(s.get('pflops')) if 'pflops' in s else '0 (base)'} | {minutes} |")
    lines += ["", f"![final]({final_png})", ""]
    return lines


def mixed_commits(commits: dict[str, int], allowed: bool) -> bool:
    """Whether the runs come from more than one commit, or a dirty or unknown one: refused
    (UserError) unless `allowed`, when the report says so at its top.

    >>> mixed_commits({"abc": 3}, False), mixed_commits({"abc": 2, "def-dirty": 1}, True)
    (False, True)
    """
    mixed = len(commits) > 1 or any(c.endswith("-dirty") or c == "unknown" for c in commits)
    if mixed and not allowed:
        raise UserError(f"the runs come from {len(commits)} commit(s) {sorted(commits)}, not one clean commit; "
                        "rerun them from one, or pass --allow-mixed-commits to report the mix")
    return mixed


def swap_in(work: Path, final: Path, kept: list[Path]) -> None:
    """Replace the report folder `final` by the finished `work`; its folders (`kept`: a study's
    archive, the runs the report may have read) stay with the report: renamed into the new folder,
    never copied or deleted."""

    for rel in kept:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(final / rel, work / rel)
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)
    final.chmod(0o755)


def make_report(paths: list[str], out: str, task: str = "micro-arith", claims=None, title: str | None = None,
                knobs_changed: list[str] | None = None, base_arm: str | None = None, allow_mixed_commits: bool = False,
                scope: list[str] | None = None, panels: dict[str, list[str]] | None = None, choose=None) -> Path:
    """Write report.md and its PNGs to `out` (through a temporary folder: never half a report).
    `scope`: the study's own statements of what it can and cannot show, printed under the claims.
    `choose`: a sweep's rule (`sweep.SweepRule`); its choice goes under the claims and into sweep.json.

    A report's runs must come from one clean commit; `allow_mixed_commits` writes it anyway, with
    the mix at the top. Folders inside `out` (a study's archive, `out/runs/`, whether or not the
    report read it) are kept: the report writes files only, and replaces those."""

    runs = RunFolder.find(paths)
    commits = run_commits(runs)
    mixed = mixed_commits(commits, allow_mixed_commits)
    results = load_results(runs, task, base_arm)
    final = Path(out)
    kept = sorted(Path(d.name) for d in final.iterdir() if d.is_dir()) if final.is_dir() else []
    if any(Path(p).resolve() == final.resolve() for p in paths):
        raise UserError(f"--out {out} is a folder the report reads; write the report elsewhere (its runs may sit in a subfolder of it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".report-", dir=final.parent))
    try:
        curve_files = plots.plot_curves(results, work)
        summary = arm_summary(results)
        final_png = plots.plot_final(summary, work)
        compute_png = plots.plot_accuracy_vs_compute(results, work, panels)
        format_png = plots.plot_format_length_vs_compute(results, work, panels)
        passk_png = plots.plot_pass_at_k(results, work)
        verdicts = holm([evaluate_claim(c, results["scores"], results["pflops"], results["compute_curves"], results["teacher_pflops"])
                         for c in (claims or [])])
        by_id = {c.id: c for c in (claims or [])}
        language_by_arm, language_by_seed = language_tables(runs, task)
        lines = header_lines(title, runs, task, results, commits, mixed)
        # 1. the headline: one row per claim
        if verdicts:
            lines += claims_section(verdicts, by_id, results["forms"])
        if choose is not None:
            sweep_lines, choice = sweep_section(results, choose, task)
            lines += sweep_lines
            atomic_write(work / "sweep.json", json.dumps(choice.__dict__, indent=2))
        if scope:
            lines += ["## What this study can and cannot show", "", "From the study's YAML (`scope:`).", ""] + [f"- {x}" for x in scope] + [""]
        # 2-4. the figures and the language of the reasoning
        lines += figures_section(compute_png, passk_png, format_png, panels=bool(panels))
        lines += language_by_arm
        lines += transfer_tables(runs, base_arm)
        # 5. details
        lines += ["## Details", ""]
        if verdicts:
            lines += claim_details(verdicts, by_id)
        lines += final_table(summary, final_png)
        lines += checkpoint_table(results, task)
        lines += cost_table(results)
        lines += [line.replace("## ", "### ", 1) if line.startswith("## ") else line for line in study_sessions(paths)]
        lines += language_by_seed
        lines += ["### Training curves", ""]
        lines += [f"![{f}]({f})" for f in curve_files] + [""]
        lines += ["### Sample completions (held-out, mixed ones first)", ""]
        lines += [f"- **{arm}** (correct={r['correct']}, mixed={r['mixed']}): `{r['question'][:90]}` → `{r['completion'][:300]}`"
                  for arm, rows in sorted(sample_completions(runs, task, base_arm=base_arm).items(), key=lambda kv: (kv[0] != "base", kv[0]))
                  for r in rows]
        lines += provenance_section(runs, results, knobs_changed)
        atomic_write(work / "report.md", "\n".join(lines) + "\n")
        atomic_write(work / "verdicts.json", json.dumps([v.__dict__ for v in verdicts], indent=2, default=str))
        if verdicts:
            atomic_write(work / "readme_table.md", readme_table(verdicts, by_id))
        swap_in(work, final, kept)
    finally:
        for rel in kept:  # a failure after a rename: the runs go back where they were
            if (work / rel).exists() and not (final / rel).exists():
                (final / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(work / rel, final / rel)
        shutil.rmtree(work, ignore_errors=True)
    return final
