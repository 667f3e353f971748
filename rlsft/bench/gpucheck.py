"""The lab's GPU check (`scripts/gpu_check.sh`): `rlsft bench` parts on a randomly initialised
Qwen2.5-0.5B architecture and one short micro recipe trained on the GPU, in one report written
part by part (SFT, GRPO step, the recipe; evaluation batching last, only inside the time budget).

    python -m rlsft.bench.gpucheck --out reports/bench        # on a GPU machine (essential parts: under 5 minutes)
    python -m rlsft.bench.gpucheck --check --out /tmp/check   # CPU, CI-sized: the same code path, tiny

The model is built in code from its architecture (no download: GPU machines have no network)
with the micro tokenizer, so its token ids stay under 1,024 while its embedding, layers and LM
head have Qwen2.5-0.5B's shapes: the FLOPs per token are the real model's. MFU is given against
the measured bf16 matmul peak and against the card's dense bf16 peak from its data sheet.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import time
from pathlib import Path

from rlsft.bench.bench import BenchArgs, run_bench
from rlsft.io import atomic_write
from rlsft.launch import train_from_config
from rlsft.models import load_tokenizer

# Architectures built in code: Qwen2.5-0.5B's published config, and a tiny one for --check
# (its vocabulary holds the micro tokenizer's 1,026 tokens).
ARCHITECTURES = {
    "qwen2.5-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0, tie_word_embeddings=True),
    "tiny": dict(vocab_size=1152, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, max_position_embeddings=512, tie_word_embeddings=True),
}
# Dense bf16 peak FLOP/s from the cards' data sheets (without sparsity), by device-name substring.
CARD_BF16_PEAK = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


def card_peak(device: str) -> float | None:
    """The data sheet's dense bf16 peak of a device, or None when unknown.

    >>> card_peak("NVIDIA H100 80GB HBM3"), card_peak("cpu, 2 threads")
    (989000000000000.0, None)
    """
    return next((v for k, v in CARD_BF16_PEAK.items() if k in device), None)


def random_model(arch: str, out: Path) -> Path:
    """A randomly initialised model folder of architecture `arch` with the micro tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    config = Qwen2Config(**ARCHITECTURES[arch])
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


# The parts, in the order they run: the essential three first (each written as it ends), the
# evaluation-batching bench last and only while time is left. Sizes (GPU, --check).
PARTS = ("sft", "grpo", "arm", "eval")
ESSENTIAL = ("sft", "grpo", "arm")
BUDGET_S = 270  # the essential parts' target on one H100/H200 (the lease's 5 minutes, less set-up); eval runs only inside it


def main(argv: list[str] | None = None) -> Path:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="reports/bench")
    p.add_argument("--check", action="store_true", help="CPU, tiny model, a step each: checks the code path, measures nothing")
    args = p.parse_args(argv)
    out = Path(args.out)
    work = out / ".gpu-check-work"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    small = args.check
    arch = "tiny" if small else "qwen2.5-0.5b"
    device = "cpu-check" if small else (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
    slug = "cpu-check" if small else "".join(c if c.isalnum() else "-" for c in device.lower()).strip("-")
    report, record = out / f"gpu-{slug}.md", {"parts": {}}
    head = [f"# GPU check: {device}", "", f"Written by `scripts/gpu_check.sh{' --check' if small else ''}`. "
            f"Model: a randomly initialised {arch} architecture (built in code, micro tokenizer). Parts in order: SFT tokens/s "
            "and MFU, a GRPO step's split beside TRL's defaults, one short micro recipe end to end, then (time allowing) "
            "evaluation batching; each is written as it ends.", ""]
    titles = {"sft": "## SFT", "grpo": "## GRPO step", "arm": ARM_HEADING, "eval": "## Evaluation"}
    sections = {part: [titles[part], "", "Not run yet."] for part in PARTS}
    failed: list[str] = []

    def write() -> None:
        """The report so far: each part is written as it ends, so a part that fails or runs out of time
        leaves the others' results (and its own error line) in place."""
        tail = [f"Elapsed at this writing: {time.time() - t0:.0f} s." + (f" Failed parts: {', '.join(failed)}." if failed else "")]
        body = [line for part in PARTS for line in sections[part] + [""]]
        atomic_write(report, "\n".join(head + body + tail + [""]))
        atomic_write(out / f"gpu-{slug}.json", json.dumps(record, indent=2, default=str))

    def stop(signum, frame):  # `timeout` and the device's limit send SIGTERM: mark the running part, keep the rest, exit
        raise Stopped("stopped by SIGTERM (a time limit)")

    signal.signal(signal.SIGTERM, stop)
    write()
    folder = None
    for part in PARTS:
        if part == "eval" and not small and time.time() - t0 > BUDGET_S:
            sections[part] = [titles[part], "", f"Skipped: the essential parts took {time.time() - t0:.0f} s of the {BUDGET_S} s budget."]
            write()
            continue
        t_part = time.time()
        try:
            if part == "arm":
                sections[part] = arm_part(train_from_config, work, small)
                record["parts"][part] = {"seconds": time.time() - t_part}
            else:
                folder = folder or random_model(arch, work / f"random-{arch}")
                bench = BenchArgs(model=str(folder), out=str(work / part), steps=1 if small else 3, warmup=1, parts=part,
                                  prompts_per_step=2 if small else 8, num_generations=2 if small else 8,
                                  max_completion_length=8 if small else 128, sft_batch_size=2 if small else 16,
                                  sft_max_length=64 if small else 512, reuse=1, eval_n=4 if small else 64, eval_max_new_tokens=8 if small else 128)
                md = Path(run_bench(bench)).read_text()
                result = json.loads(next((work / part).glob("*.json")).read_text())
                record["parts"][part] = {"seconds": time.time() - t_part, "bench": result}
                sections[part] = [f"{titles[part]} ({time.time() - t_part:.0f} s)", "", _bench_section(md, titles[part])]
                peak = card_peak(result["device"])
                if part == "sft" and peak:
                    sections[part] += ["", f"Card's dense bf16 peak (data sheet): {peak / 1e12:.0f} TFLOP/s; SFT MFU against it: "
                                       + ", ".join(f"{s['variant']} {s['mfu'] * result['matmul_peak_tflops'] * 1e12 / peak:.1%}" for s in result["sft"])]
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
    run = json.loads((work / "r1_zero" / "run.json").read_text())
    return [ARM_HEADING, "", f"`rlsft train configs/micro/r1_zero.yaml training.max_steps={steps}` (pure RL on micro-student, "
            f"{'4' if small else '64'} held-out problems): {seconds:.0f} s in all, {run['compute']['wall_seconds']:.0f} s training, "
            f"{run['compute']['flops'] / 1e15:.4g} PFLOPs; held-out micro-arith pass@1 {run['eval_after']['micro-arith']['pass@1']:.3f} "
            f"(before: {run['eval_before']['micro-arith']['pass@1']:.3f})."]


if __name__ == "__main__":
    main()
