"""The lab's GPU check (`scripts/gpu_check.sh`): `rlsft bench` parts on a randomly initialised
Qwen2.5-0.5B architecture and one short micro recipe trained on the GPU, in one report written
part by part (SFT, GRPO step, the recipe; then, only inside the time budget, evaluation batching
and a one-step smoke run of each real config with its peak memory).

    python -m rlsft.bench.gpucheck --out reports/bench                  # on a GPU machine (under 5 minutes)
    python -m rlsft.bench.gpucheck --parts configs --out reports/bench  # the real configs alone, with the whole budget
    python -m rlsft.bench.gpucheck --check --out /tmp/check             # CPU, CI-sized: the same code path, tiny

The model is built in code from its architecture (no download: GPU machines have no network)
with the micro tokenizer, so its token ids stay under 1,024 while its embedding, layers and LM
head have Qwen2.5-0.5B's shapes: the FLOPs per token are the real model's. MFU is given against
the measured bf16 matmul peak and against the card's dense bf16 peak from its data sheet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from rlsft.bench.bench import BenchArgs, run_bench
from rlsft.io import UserError, atomic_write
from rlsft.launch import train_from_config
from rlsft.models import ARCHITECTURES, MODEL_CARDS, load_tokenizer
from rlsft.runs.folder import RunFolder
from rlsft.scoring.tasks import get_task

# A tiny architecture for --check (its vocabulary holds the micro tokenizer's 1,026 tokens); real
# ones come from the model cards (rlsft.models.ARCHITECTURES).
TINY = dict(vocab_size=1152, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=True)
# Dense bf16 peak FLOP/s from the cards' data sheets (without sparsity), by device-name substring.
# The first key a device's name contains wins, so the variants come before "H100".
CARD_BF16_PEAK = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


def card_peak(device: str) -> float | None:
    """The data sheet's dense bf16 peak of a device, or None when unknown.

    >>> card_peak("NVIDIA H100 80GB HBM3"), card_peak("cpu, 2 threads")
    (989000000000000.0, None)
    """
    return next((v for k, v in CARD_BF16_PEAK.items() if k in device), None)


def random_model(arch: str, out: Path) -> Path:
    """A randomly initialised model folder of architecture `arch` ("tiny", or a key of
    rlsft.models.ARCHITECTURES) with the micro tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(**(TINY if arch == "tiny" else ARCHITECTURES[arch]))
    model = AutoModelForCausalLM.from_config(config)
    if torch.cuda.is_available():
        model = model.to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    load_tokenizer("micro-student").save_pretrained(out)
    return out


class Stopped(BaseException):
    """A time limit's SIGTERM: a BaseException, so no `except Exception` on the way re-labels it."""


ARM_HEADING = "## One micro-claims arm on this device"


def failure(e: BaseException) -> str:
    """The report's one line for a part that failed.

    >>> failure(Stopped("stopped by SIGTERM\\nmore"))
    '**Failed**: Stopped: stopped by SIGTERM'
    """
    return f"**Failed**: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


# The parts, in the order they run: the essential three first (each written as it ends), then
# evaluation batching and the real configs' smoke runs, only while time is left. Sizes (GPU, --check).
PARTS = ("sft", "grpo", "arm", "eval", "configs")
ESSENTIAL = ("sft", "grpo", "arm")
BUDGET_S = 270  # the whole check's target on one H100/H200 (the lease's 5 minutes, less set-up); eval and configs run only inside it

# The real configs and the card each is sized for (docs/recipes.md), in the order the smoke runs go
# while time is left; each runs one optimizer step at its own batch sizes and lengths, with random
# weights of its models' architectures (real weights cannot reach the GPU machine). The pipelines
# (r1, hybrid) chain these same configs. Offline distillation is left out: a random teacher writes
# no trace the verifier keeps, so there is nothing to train on; its training is SFT's shape.
REAL_CONFIGS = ("configs/qwen2.5-0.5b/r1_zero.yaml", "configs/qwen2.5-0.5b/sft_cold_start.yaml", "configs/qwen2.5-1.5b/r1_zero.yaml",
                "configs/qwen2.5-1.5b/sft_cold_start.yaml", "configs/qwen2.5-0.5b/distill_onpolicy.yaml", "configs/qwen2.5-1.5b/distill_onpolicy.yaml")
CARD_GB = {"qwen2.5-0.5b": 24, "qwen2.5-1.5b": 40}  # by config folder: the card its configs are sized for (float32 weights)


def architecture_of(model: str) -> str:
    """The architecture a real config's model is stood in for by (its model card's).

    >>> architecture_of("Qwen/Qwen2.5-1.5B-Instruct")
    'qwen2.5-1.5b'
    """
    card = MODEL_CARDS.get(model)
    if card is None or card.architecture is None:
        raise UserError(f"{model}: its model card (rlsft.models.MODEL_CARDS) names no architecture to build with random weights")
    return card.architecture


def main(argv: list[str] | None = None) -> Path:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/bench")
    p.add_argument("--check", action="store_true", help="CPU, tiny model, a step each: checks the code path, measures nothing")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)} (default: all, in that order)")
    args = p.parse_args(argv)
    parts = [x for x in PARTS if x in args.parts.split(",")]
    if not parts or set(args.parts.split(",")) - set(PARTS):
        raise SystemExit(f"gpu_check: --parts takes {', '.join(PARTS)}, got {args.parts!r}")
    out = Path(args.out)
    work = out / ".gpu-check-work"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    small = args.check
    arch = "tiny" if small else "qwen2.5-0.5b"
    device = "cpu-check" if small else (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
    slug = ("cpu-check" if small else "".join(c if c.isalnum() else "-" for c in device.lower()).strip("-")) \
        + ("" if parts == list(PARTS) else "-" + "-".join(parts))  # a partial check keeps its own report
    report, record = out / f"gpu-{slug}.md", {"parts": {}}
    head = [f"# GPU check: {device}", "", f"Written by `scripts/gpu_check.sh{' --check' if small else ''}`. "
            f"Model: a randomly initialised {arch} architecture (built in code, micro tokenizer). Parts in order: SFT tokens/s "
            "and MFU, a GRPO step's split beside TRL's defaults, one short micro recipe end to end, then (time allowing) "
            "evaluation batching and one step of each real config with its peak memory; each is written as it ends.", ""]
    titles = {"sft": "## SFT", "grpo": "## GRPO step", "arm": ARM_HEADING, "eval": "## Evaluation", "configs": CONFIGS_HEADING}
    sections = {part: [titles[part], "", "Not run yet."] for part in parts}
    failed: list[str] = []

    def write() -> None:
        """The report so far: each part is written as it ends, so a part that fails or runs out of time
        leaves the others' results (and its own error line) in place."""
        tail = [f"Elapsed at this writing: {time.time() - t0:.0f} s." + (f" Failed parts: {', '.join(failed)}." if failed else "")]
        body = [line for part in parts for line in sections[part] + [""]]
        atomic_write(report, "\n".join(head + body + tail + [""]))
        atomic_write(out / f"gpu-{slug}.json", json.dumps(record, indent=2, default=str))

    def stop(signum, frame):  # `timeout` and the device's limit send SIGTERM: mark the running part, keep the rest, exit
        raise Stopped("stopped by SIGTERM (a time limit)")

    signal.signal(signal.SIGTERM, stop)
    write()
    folder = None
    for part in parts:
        if part not in ESSENTIAL and not small and time.time() - t0 > BUDGET_S:
            sections[part] = [titles[part], "", f"Skipped: the parts before it took {time.time() - t0:.0f} s of the {BUDGET_S} s budget."]
            write()
            continue
        t_part = time.time()
        try:
            if part == "arm":
                sections[part] = arm_part(train_from_config, work, small)
                record["parts"][part] = {"seconds": time.time() - t_part}
            elif part == "configs":
                sections[part], record["parts"][part] = configs_part(work, small, deadline=t0 + BUDGET_S)
            else:
                folder = folder or random_model(arch, work / f"random-{arch}")
                sections[part], result = bench_part(part, folder, work, small, titles[part])
                record["parts"][part] = {"seconds": time.time() - t_part, "bench": result}
        except (Exception, Stopped) as e:  # noqa: BLE001 -- the check reports a failing part and goes on to the next
            failed.append(part)
            partial = sorted((work / part).glob("*.md"))  # what the bench measured before it stopped
            sections[part] = [titles[part], "", _bench_section(partial[0].read_text(), titles[part]) if partial else "", failure(e)]
            write()
            if isinstance(e, Stopped):
                raise SystemExit(f"gpu_check: stopped by SIGTERM during {part} (see {report})") from None
            continue
        write()
    shutil.rmtree(work, ignore_errors=True)
    print(report.read_text())
    if failed:
        raise SystemExit(f"gpu_check: failed parts: {', '.join(failed)} (see {report})")
    return report


def bench_part(part: str, folder: Path, work: Path, small: bool, title: str) -> tuple[list[str], dict]:
    """One `rlsft bench` part on the random model in `folder`: the report's lines and the bench's record."""
    t = time.time()
    bench = BenchArgs(model=str(folder), out=str(work / part), steps=1 if small else 3, warmup=1, parts=part,
                      prompts_per_step=2 if small else 8, num_generations=2 if small else 8,
                      max_completion_length=8 if small else 128, sft_batch_size=2 if small else 16,
                      sft_max_length=64 if small else 512, reuse=1, eval_n=4 if small else 64, eval_max_new_tokens=8 if small else 128)
    md = Path(run_bench(bench)).read_text()
    result = json.loads(next((work / part).glob("*.json")).read_text())
    lines = [f"{title} ({time.time() - t:.0f} s)", "", _bench_section(md, title)]
    peak = card_peak(result["device"])
    if part == "sft" and peak:
        lines += ["", f"Card's dense bf16 peak (data sheet): {peak / 1e12:.0f} TFLOP/s; SFT MFU against it: "
                  + ", ".join(f"{s['variant']} {s['achieved_tflops'] * 1e12 / peak:.1%}" for s in result["sft"])]
    return lines, result


def _bench_section(md: str, title: str) -> str:
    """One bench part's output under this report's heading: the bench's own title dropped, its
    headings one level down (a part's empty tables for the other parts stay empty)."""
    lines = md.splitlines()[1:]
    return "\n".join("#" + line if line.startswith("## ") else line for line in lines).strip()


def arm_part(train_from_config, work: Path, small: bool) -> list[str]:
    """One short micro recipe end to end: pure RL on micro-student, 20 GRPO steps (2 with --check)."""
    steps = 2 if small else 20
    arm = [f"training.max_steps={steps}", f"run.out_dir={work / 'r1_zero'}", "run.report_to=none", "eval.tasks=[micro-arith]",
           "eval.n=64" if not small else "eval.n=4", "probe.prompts=4", "training.logging_steps=1" if small else "training.logging_steps=10"]
    if small:
        arm += ["data.n_train=16", "eval.samples=2", "eval.max_new_tokens=16"]
    t = time.time()
    train_from_config("configs/micro/r1_zero.yaml", arm)
    seconds = time.time() - t
    run = RunFolder(work / "r1_zero").run_record
    return [ARM_HEADING, "", f"`rlsft train configs/micro/r1_zero.yaml training.max_steps={steps}` (pure RL on micro-student, "
            f"{'4' if small else '64'} held-out problems): {seconds:.0f} s in all, {run.compute.wall_seconds:.0f} s training, "
            f"{run.pflops:.4g} PFLOPs; held-out micro-arith pass@1 {run.eval_after['micro-arith']['pass@1']:.3f} "
            f"(before: {run.eval_before['micro-arith']['pass@1']:.3f})."]


CONFIGS_HEADING = "## The real configs on this device (random weights, one step each)"


def smoke_data(root: Path, n: int = 64) -> Path:
    """A folder laid out like ../shared/data (`RLSFT_DATA`) whose GSM8K files hold `n` micro-arith
    problems in GSM8K's upstream format, so the real configs load their task with no network."""

    rows = get_task("micro-arith").load("train", n=n)
    # solutions longer than any config's sft.max_length, so SFT trains at its full length (the worst case)
    reasoning = " ".join(["Add the first two numbers, then take the third away."] * 300)
    text = "".join(json.dumps({"question": r["question"], "answer": f"{reasoning}\n#### {r['answer']}"}) + "\n" for r in rows)
    for split in ("train", "test"):
        (root / "gsm8k").mkdir(parents=True, exist_ok=True)
        atomic_write(root / "gsm8k" / f"{split}.jsonl", text)
    return root


def smoke_overrides(cfg: dict, models: dict[str, Path], out: Path, small: bool) -> list[str]:
    """The overrides that turn a real config into its smoke run: random models of its
    architectures, one optimizer step at the config's own batch sizes and lengths (all of them on
    the GPU; tiny with --check), a token evaluation after it (evaluation memory is bounded by
    eval.memory_gb by construction), no pre-flight.

    >>> smoke_overrides({"recipe": "sft", "model": {"name": "Qwen/Qwen2.5-0.5B"}}, {"Qwen/Qwen2.5-0.5B": Path("m")}, Path("o"), False)[:3]
    ['model.name=m', 'run.out_dir=o', 'run.report_to=none']
    """
    o = [f"model.name={models[cfg['model']['name']]}", f"run.out_dir={out}", "run.report_to=none", "training.max_steps=1",
         "training.logging_steps=1", "training.save_strategy=no", "eval.before=false", "eval.tasks=[gsm8k]", "eval.n=2", "eval.samples=1",
         "eval.max_new_tokens=8"]
    recipe, teacher = cfg["recipe"], (cfg.get("distill") or {}).get("teacher")
    if teacher:
        o.append(f"distill.teacher={models[teacher]}")
    if recipe == "grpo":
        o.append("probe.enabled=false")
    if small:  # the code path only: a CPU cannot hold the real sizes in minutes
        o += ["model.dtype=float32", "training.per_device_train_batch_size=2", "training.gradient_accumulation_steps=1",
              "training.gradient_checkpointing=false"]
        o += {"grpo": ["grpo.num_generations=2", "grpo.max_completion_length=8"], "sft": ["sft.max_length=64", "examples.n=4"],
              "distill": ["distillation.max_completion_length=8"]}[recipe]
    return o


def configs_part(work: Path, small: bool, deadline: float) -> tuple[list[str], dict]:
    """One optimizer step of each of `REAL_CONFIGS` (the first two with --check), each in its own
    process so that its peak memory is its own, while time is left before `deadline`: the report's
    rows (peak memory against the card its config is sized for, `CARD_GB`) and the record."""

    data = smoke_data(work / "data")
    models: dict[str, Path] = {}
    rows, record = [], {}
    for path in REAL_CONFIGS[:2] if small else REAL_CONFIGS:
        cfg = yaml.safe_load(Path(path).read_text())
        left = deadline - time.time()
        if left < 30 and not small:
            rows.append(f"| `{path}` | | | | not run: {max(left, 0):.0f} s of the budget left |")
            continue
        t = time.time()
        try:
            for hub_id in filter(None, (cfg["model"]["name"], (cfg.get("distill") or {}).get("teacher"))):
                arch = "tiny" if small else architecture_of(hub_id)
                if hub_id not in models:
                    models[hub_id] = random_model(arch, work / f"random-{arch}") if not (work / f"random-{arch}").is_dir() else work / f"random-{arch}"
            out = work / "configs" / Path(path).parent.name / Path(path).stem
            command = [sys.executable, "-m", "rlsft.cli", "train", path, *smoke_overrides(cfg, models, out, small)]
            env = {**os.environ, "RLSFT_DATA": str(data), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=None if small else max(left, 1))
            if done.returncode != 0:
                raise RuntimeError((done.stderr.strip().splitlines() or ["no output"])[-1])
            compute = RunFolder(out).run_record.compute
            peak = compute.peak_memory_gb
            card = CARD_GB[Path(path).parent.name]
            verdict = f"within {card} GB" if peak is not None and peak <= card else f"over {card} GB"
            rows.append(f"| `{path}` | {architecture_of(cfg['model']['name'])} | {peak} | {verdict} | {time.time() - t:.0f} s |")
            record[path] = {"peak_memory_gb": peak, "seconds": time.time() - t, "device": compute.device}
        except Exception as e:  # noqa: BLE001 -- one config's failure is its row; the others still run
            rows.append(f"| `{path}` | | | | {failure(e)} |")
            record[path] = {"error": failure(e)}
    lines = [CONFIGS_HEADING, "", "Each config runs one optimizer step (`training.max_steps=1`) at its own batch sizes, gradient "
             "accumulation and lengths, with randomly initialised weights of its models' architectures and GSM8K-format problems "
             "(random weights write every completion to its maximum length: the worst case). Peak memory: torch's peak allocation "
             "in that run's own process (on a CPU, its resident high-water mark)." + (" --check: tiny sizes, the code path only." if small else ""),
             "", "| config | student | peak memory GB | on its card | seconds |", "|---|---|---|---|---|", *rows]
    return lines, record


if __name__ == "__main__":
    main()
