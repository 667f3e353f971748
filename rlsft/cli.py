"""The `rlsft` command line. Each subcommand is a thin wrapper over a library function.

    rlsft score    --task T --completions IN.jsonl --out OUT.jsonl [--language L]
    rlsft eval     --model PATH_OR_ID --task T [--n N] [--samples K] [--temperature t] --out DIR
    rlsft pretrain CONFIG [key=value ...]
    rlsft train    CONFIG [key=value ...] [--dry-run]
    rlsft probe    CONFIG [key=value ...] [--out DIR]
    rlsft study    CONFIG [key=value ...] [--jobs N] [--executor local|slurm] [--only ARM[:SEED],...] [--archive DIR] [--keep-unfinished]
                   [--dry-run] [--status] [--report DIR] [--allow-mixed-commits]
    rlsft bench    [--model M] [--out DIR]
    rlsft report   RUN_OR_STUDY ... --out DIR [--claims STUDY.yaml]
    rlsft power    PILOT_RUN [--at after|STEP] [--seeds S ...] [--problems N ...] [--samples K ...] [--out FILE.md]

Every flag: `rlsft SUBCOMMAND --help` and docs/commands.md.

A user mistake (bad flag, missing file, bad JSONL line, unknown name) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import yaml

from rlsft.bench.bench import BenchArgs, main_bench
from rlsft.config import load_config
from rlsft.io import UserError, atomic_write, is_blind, to_json
from rlsft.launch import RECIPES, dry_run, probe_from_config, train_from_config
from rlsft.micro.pretrain import pretrain_from_config
from rlsft.models import MICRO_MODELS_DIR, MODEL_CARDS
from rlsft.preflight import refusal, summary_line
from rlsft.runs.folder import RunFolder
from rlsft.scoring.evaluate import EvalArgs, evaluate, score_file
from rlsft.scoring.tasks import TASKS, get_task
from rlsft.studies.executors import status_table
from rlsft.studies.study import StudyConfig, all_finished, check_names, keep_unfinished, run_study, study_root, study_status, study_task
from rlsft.verdicts.claims import MIN_SEEDS
from rlsft.verdicts.power import power_table, render
from rlsft.verdicts.report import make_report, per_problem


def _positive_int(text: str, least: int = 1) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if v < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {v}")
    return v


def _count(text: str) -> int:
    """A whole number of at least 0 (0: skip)."""
    return _positive_int(text, least=0)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a wrong flag on one line (no usage dump) and exits 2."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="rlsft", description="RL-versus-SFT training-recipe lab for small models' math reasoning.", allow_abbrev=False)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("score", help="score completions from a JSONL file (no model needed)", allow_abbrev=False)

    s.add_argument("--task", required=True, help=f"task whose verifier to use ({', '.join(TASKS)})")
    s.add_argument("--completions", required=True, help="JSONL with completion and answer per line (prompt, language optional)")
    s.add_argument("--out", required=True, help="output JSONL: the input rows plus correct, format_ok, language_consistency, mixed")
    s.add_argument("--language", default=None, help="target language when a row has none (default: the task's, en)")

    e = sub.add_parser("eval", help="generate with a model on a task's held-out split and score it", allow_abbrev=False)
    e.add_argument("--model", required=True, help="micro model name, smollm2-135m, local folder or hub id")
    e.add_argument("--task", required=True)
    e.add_argument("--out", required=True, help="output folder for metrics.json and samples.jsonl")
    e.add_argument("--n", type=_positive_int, default=None, help="number of problems (default: whole split; 500 for micro tasks)")
    e.add_argument("--split", choices=("test", "validation"), default="test", help="held-out split (validation: where settings are chosen)")
    e.add_argument("--samples", type=_positive_int, default=1, help="completions per problem (K of pass@K)")
    e.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 is greedy")
    e.add_argument("--top-p", type=float, default=1.0)
    e.add_argument("--max-new-tokens", type=_positive_int, default=None, help="default: 512, or the micro model's context budget")
    e.add_argument("--backend", choices=("auto", "transformers", "vllm"), default=None,
                   help="generation: transformers' generate (default), vllm (a GPU with vLLM installed), or auto (vllm where it can run)")
    e.add_argument("--batch-size", type=_positive_int, default=None, help="sequences (prompts x samples) per generate call (default: sized from --memory-gb)")
    e.add_argument("--memory-gb", type=float, default=None, help="generation memory budget that sizes the batch (default 4)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--language", default=None, help="target language of the reasoning (default: the task's)")
    e.add_argument("--template", default="auto", help="prompt form: auto (chat when the model has a chat template), r1-zero or chat")
    e.add_argument("--think-prefill", action="store_true", help="open each prompt's answer with <think> and stop at </answer>, as a run trained with data.think_prefill")
    e.add_argument("--source", default=None, help="local JSONL or hub id replacing the task's default data")
    e.add_argument("--dtype", default="auto")
    e.add_argument("--revision", default=None, help="hub branch, tag or commit of --model")
    e.add_argument("--trust-remote-code", action="store_true", help="allow a hub model's own code to run (off by default)")

    pt = sub.add_parser("pretrain", help="build a micro base model (corpus, tokenizer, model, card) from a config", allow_abbrev=False)
    pt.add_argument("config", help="YAML under configs/micro/")
    pt.add_argument("overrides", nargs="*", help="key=value overrides of config fields")
    pt.add_argument("--overlap", type=_positive_int, metavar="N", default=None,
                    help="train nothing: print the corpus's overlap (questions, step chains) with N problems of each split")

    t = sub.add_parser("train", help=f"run a training recipe ({', '.join(RECIPES)}) or a pipeline of them from a config", allow_abbrev=False)
    t.add_argument("config", help="YAML under configs/ with a recipe: key")
    t.add_argument("overrides", nargs="*", help="key=value overrides, dotted for sections (training.max_steps=50)")
    t.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue a killed run (a pipeline's folder for a pipeline) from its latest checkpoint")
    t.add_argument("--dry-run", action="store_true", help="validate; print (YAML) each stage's folder, compute estimate, TRL config fields that differ from TRL's defaults, and resolved config; train nothing")

    pr = sub.add_parser("probe", help="the pre-flight signal check of a GRPO config alone: does any group of completions get differing rewards?",
                        allow_abbrev=False)
    pr.add_argument("config", help="a GRPO recipe YAML")
    pr.add_argument("overrides", nargs="*", help="key=value overrides, as for train (probe.prompts=16, extraction=lenient)")
    pr.add_argument("--out", default=None, help="also write the record to DIR/probe.json")

    add_study_parser(sub)

    r = sub.add_parser("report", help="Markdown report with plots from run or study folders", allow_abbrev=False)
    r.add_argument("runs", nargs="+", help="run folders, or folders holding them (a study, a pipeline)")
    r.add_argument("--out", required=True, help="report folder, e.g. reports/NAME/")
    r.add_argument("--task", default=None, help="held-out task the report reads (default: the --claims study's task, else micro-arith)")
    r.add_argument("--claims", default=None, help="a study YAML whose claims to check on these runs")
    r.add_argument("--allow-mixed-commits", action="store_true", help="report runs from several commits or a dirty tree (the mix is printed at the top)")

    add_power_parser(sub)
    add_bench_parser(sub)
    return p


def add_power_parser(sub) -> None:
    pw = sub.add_parser("power", help="minimum detectable effects of a study design from a pilot run's per-problem changes", allow_abbrev=False)
    pw.add_argument("run", help="the pilot's run folder (evaluated before training and at --at)")
    pw.add_argument("--at", default="after", help="the pilot's evaluation to read: after (default) or a curve step")
    pw.add_argument("--task", default="micro-arith")
    pw.add_argument("--seeds", type=_positive_int, nargs="+", default=[4], help="seeds per arm of the designs (at least 3: fewer make a pilot)")
    pw.add_argument("--problems", type=_positive_int, nargs="+", default=[64], help="held-out problems per seed")
    pw.add_argument("--samples", type=_positive_int, nargs="+", default=[4], help="samples per problem")
    pw.add_argument("--out", default=None, help="also write the table to this markdown file")


def add_bench_parser(sub) -> None:
    """`rlsft bench`'s flags (rlsft.bench.bench.BenchArgs)."""
    b = sub.add_parser("bench", help="GRPO step split and SFT throughput/MFU, side by side with TRL's defaults", allow_abbrev=False)
    b.add_argument("--model", default="micro-student", help="micro model name or local folder")
    b.add_argument("--out", default="reports/bench", help="folder for bench-<device>-<model>.json and .md")
    b.add_argument("--steps", type=_positive_int, default=6, help="timed steps per measurement")
    b.add_argument("--warmup", type=_count, default=2, help="untimed steps first")
    b.add_argument("--max-completion-length", type=_positive_int, default=96, help="GRPO completion budget, tokens")
    b.add_argument("--reuse", type=_positive_int, default=4, help="also time GRPO with one generate call per N steps (1: skip)")
    b.add_argument("--prompts-per-step", type=_positive_int, default=8, help="GRPO prompts per step")
    b.add_argument("--num-generations", type=_positive_int, default=8, help="GRPO completions per prompt")
    b.add_argument("--micro-batch", type=_count, default=0, help="also time GRPO with each step trained in micro-batches of N completions (0: skip)")
    b.add_argument("--isolate", action="store_true", help="run each measurement in its own process, so each peak memory is its own")
    b.add_argument("--eval-n", type=_positive_int, default=256, help="held-out problems for the evaluation measurement")
    b.add_argument("--parts", default="eval,grpo,sft", help="measurements to run, a comma list of eval, grpo and sft")
    b.add_argument("--precision", default="", help="extra GRPO variants, a comma list of bf16 (autocast) and bf16-weights")
    b.add_argument("--wide", type=_count, default=0, help="also time a GRPO step of N prompts (x generations, one generate call) in micro-batches (0: skip)")
    b.add_argument("--lora", default="", help="also time LoRA GRPO (alpha 32, all linear), a comma list of ranks, e.g. 1,16; on the --wide step if any")
    b.add_argument("--eval-samples", default="1,8", help="samples per problem of the evaluation measurements, a comma list")
    b.add_argument("--eval-max-new-tokens", type=_positive_int, default=128, help="token budget of the evaluation measurements")
    b.add_argument("--profile", action="store_true", help="also profile one GRPO update with TRL's and the lab's log-prob head")
    b.add_argument("--by-length", action="store_true",
                   help="also time the lab's step with group_by_length (micro-batches by completion length, each trimmed of padding)")
    b.add_argument("--full-batch", action="store_true",
                   help="also time the lab's step and evaluation with every sequence computed to its call's end (generate itself)")
    b.add_argument("--template", default="r1-zero", help="prompt form of the GRPO measurement: r1-zero, or chat (the model's template)")


def add_study_parser(sub) -> None:
    """`rlsft study`'s arguments (a subparser of `build_parser`'s)."""
    st = sub.add_parser("study", help="run a recipes x seeds matrix, check the claims, write the report", allow_abbrev=False)
    st.add_argument("config", help="study YAML under configs/studies/")
    st.add_argument("overrides", nargs="*", help="key=value overrides of the study config")
    st.add_argument("--report", default=None, help="report folder (default: reports/<study name>/)")
    st.add_argument("--allow-mixed-commits", action="store_true", help="report runs from several commits or a dirty tree (the mix is printed at the top)")
    st.add_argument("--executor", choices=("local", "slurm"), default="local",
                    help="local: this machine (workers pinned to GPUs or CPU threads); slurm: one submitit job array (the YAML's cluster: section)")
    st.add_argument("--dry-run", action="store_true", help="print what would run (for slurm: the sbatch files and every element's command); run nothing")
    st.add_argument("--status", action="store_true", help="print each run's state (done, running, queued, failed, interrupted), compute so far and an estimate of what remains")
    st.add_argument("--only", default=None, metavar="ARM[:SEED],...",
                    help="run just these arms or runs, in this order (the report waits until every run has finished)")
    st.add_argument("--archive", default=None, metavar="DIR",
                    help="a folder that outlives this machine: finished runs there are restored first, and each run is copied there, weights left out, when it finishes; with --status, runs finished there count as done")
    st.add_argument("--keep-unfinished", action="store_true",
                    help="with --archive, after stopping the study: copy each unfinished run's newest checkpoint and what it has made into "
                         "the archive (LoRA's state: MBs), where --archive on the next machine restores it to resume; run nothing")
    st.add_argument("--jobs", type=_positive_int, default=1,
                    help="runs at a time, each in its own process with cores/jobs threads (default 1: one after another, in this process)")


def study_command(args) -> int:
    """`rlsft study`: its runs (or their status), then its report once every run has finished."""
    if args.status and args.keep_unfinished:
        raise UserError("--status and --keep-unfinished: one at a time (--status reads, --keep-unfinished writes the archive)")
    if args.status:
        print(status_table(study_status(args.config, args.overrides, archive=args.archive)), end="")
        return 0
    if args.keep_unfinished:
        if not args.archive:
            raise UserError("--keep-unfinished needs --archive DIR (where the unfinished runs are kept)")
        keep_unfinished(args.config, args.overrides, args.archive)
        return 0
    only = [x for x in args.only.split(",") if x] if args.only is not None else None
    if only == []:  # an empty --only must not run the whole study
        raise UserError("--only names no run: give ARM or ARM:SEED, comma-separated")
    cfg = run_study(args.config, args.overrides, jobs=args.jobs, executor=args.executor, dry_run=args.dry_run, only=only,
                    archive=args.archive)
    if args.dry_run or args.executor == "slurm":
        return 0
    if not all_finished(cfg, args.config):
        print(f"[study {cfg.name}] the report waits until every run has finished (rlsft study {args.config} --status)")
        return 0
    out = make_report([str(study_root(cfg))], args.report or f"reports/{cfg.name}", task=study_task(cfg), claims=cfg.claims,
                      title=f"Study {cfg.name}", knobs_changed=cfg.knobs_changed_after_results, base_arm=cfg.base_arm, scope=cfg.scope,
                      panels=cfg.panels, allow_mixed_commits=args.allow_mixed_commits, choose=cfg.choose)
    if cfg.choose is not None:
        print(f"[study {cfg.name}] sweep: {json.loads((out / 'sweep.json').read_text())['line']}")
    print(f"report: {out / 'report.md'}")
    return 0


def report_command(args) -> None:
    """`rlsft report`: a report of any runs, with a study's claims, task and sweep rule when --claims names one."""
    claims, knobs, title, base_arm, scope, panels, choose, task = None, None, None, None, None, None, None, args.task
    if args.claims:
        study = load_config(StudyConfig, args.claims)
        check_names(study, args.claims)
        claims, knobs, title, base_arm, scope, panels, choose = (study.claims, study.knobs_changed_after_results, f"Study {study.name}",
                                                                 study.base_arm, study.scope, study.panels, study.choose)
        task = task or study_task(study)
    if task is not None:
        get_task(task)  # a misspelt task: one line, not an empty report
    out = make_report(args.runs, args.out, task=task or "micro-arith", claims=claims, title=title, knobs_changed=knobs, base_arm=base_arm,
                      scope=scope, panels=panels, allow_mixed_commits=args.allow_mixed_commits, choose=choose)
    print(f"report: {out / 'report.md'}")


def score_command(args) -> None:
    print(to_json(score_file(args.task, args.completions, args.out, args.language)), end="")


def eval_command(args) -> None:
    kwargs = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    if "max_new_tokens" not in kwargs:
        kwargs["max_new_tokens"] = _default_max_new_tokens(args.model)
    result = evaluate(EvalArgs(**kwargs))
    figures = {} if is_blind() else {k: v["value"] for k, v in result["metrics"].items() if isinstance(v, dict)}
    print(to_json({"out": args.out, **figures}), end="")


def pretrain_command(args) -> None:
    result = pretrain_from_config(args.config, args.overrides, args.overlap)
    if args.overlap:
        print(to_json(result), end="")


def train_command(args) -> None:
    if args.resume and not Path(args.resume).is_dir():  # checked before a dry run as before a real one
        raise UserError(f"--resume {args.resume}: no such run folder")
    if args.dry_run:
        with contextlib.redirect_stdout(sys.stderr):  # libraries' import-time prints stay out of the YAML
            plan = json.loads(to_json(dry_run(args.config, args.overrides)))
        print(yaml.safe_dump(plan, sort_keys=False, allow_unicode=True), end="")
        return
    record = train_from_config(args.config, args.overrides, resume=args.resume)
    held_out = {} if is_blind() else {"eval_before": record["eval_before"], "eval_after": record["eval_after"]}
    print(to_json({"out": record["out"], "compute": record["compute"], **held_out}), end="")


def probe_command(args) -> None:
    with contextlib.redirect_stdout(sys.stderr):  # libraries' prints stay out of the JSON
        record = probe_from_config(args.config, args.overrides, args.out)
    print(to_json(record), end="")
    if not record["passed"]:
        raise UserError(refusal(record))
    print(summary_line(record), file=sys.stderr)


def bench_command(args) -> None:
    main_bench(BenchArgs(model=args.model, out=args.out, steps=args.steps, warmup=args.warmup,
                         max_completion_length=args.max_completion_length, reuse=args.reuse, eval_n=args.eval_n, parts=args.parts,
                         prompts_per_step=args.prompts_per_step, num_generations=args.num_generations,
                         micro_batch=args.micro_batch, isolate=args.isolate, precision=args.precision, template=args.template,
                         wide=args.wide, lora=args.lora, eval_samples=args.eval_samples, eval_max_new_tokens=args.eval_max_new_tokens, profile=args.profile,
                         full_batch=args.full_batch, by_length=args.by_length))


def power_command(args) -> None:
    """`rlsft power`: the minimum detectable effects of study designs from a pilot run (rlsft/verdicts/power.py)."""

    if min(args.seeds) < MIN_SEEDS:  # fewer seeds make a pilot, which gets no verdict
        raise UserError(f"--seeds: a claim's verdict needs at least {MIN_SEEDS} seeds, got {min(args.seeds)}")
    run = RunFolder(args.run)
    before = per_problem(run.eval_dir("before"), args.task)
    at = run.eval_dir("after") if args.at == "after" else run.curve_dir(int(args.at), args.task).parent if args.at.isdigit() else None
    if at is None:
        raise UserError(f"--at must be after or a curve step, got {args.at!r}")
    after = per_problem(at, args.task)
    if not before or not after:
        raise UserError(f"{run.path}: no {args.task} samples {'before training' if not before else f'at {args.at}'} ({at / args.task})")
    designs = [(S, n, m) for S in args.seeds for n in args.problems for m in args.samples]
    table = render(power_table(before, after, designs), f"{run.path}, before training and at {args.at}")
    if args.out:
        atomic_write(Path(args.out), table)
    print(table, end="")


COMMANDS = {"score": score_command, "eval": eval_command, "pretrain": pretrain_command, "train": train_command, "probe": probe_command,
            "study": study_command, "bench": bench_command, "report": report_command, "power": power_command}  # subcommand -> its function


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _default_max_new_tokens(model: str) -> int:
    """A real model's card (rlsft.models.MODEL_CARDS, else 512); a micro model's rlsft_card.json
    gives the budget its context allows."""

    card = MICRO_MODELS_DIR / model / "rlsft_card.json"
    if not card.is_file() and (Path(model) / "rlsft_card.json").is_file():
        card = Path(model) / "rlsft_card.json"
    if card.is_file():
        return int(json.loads(card.read_text())["generation"]["max_new_tokens"])
    return MODEL_CARDS[model].max_new_tokens if model in MODEL_CARDS else 512


def entry() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())


if __name__ == "__main__":
    entry()
