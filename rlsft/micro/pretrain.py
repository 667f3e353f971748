"""Pretrain a micro base model on the bilingual micro corpus: corpus -> tokenizer -> model -> card.

    rlsft pretrain configs/micro/student.yaml            # its card records the time (train_seconds, threads)
    rlsft pretrain configs/micro/teacher.yaml
    rlsft pretrain configs/micro/student.yaml out_dir=/tmp/my-student max_steps=200

Sections: config, corpus, tokenizer, model, trainer, train, save, evaluate, card.
The output folder holds safetensors weights (bf16, to keep the package small), the tokenizer, a
machine-readable `rlsft_card.json` and a human `README.md` model card, both written here.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlsft.config import load_config, to_dict
from rlsft.io import UserError, atomic_write, to_json
from rlsft.micro.tokenizer import train_tokenizer
from rlsft.micro.world import ArithConfig, CorpusConfig, CountdownConfig, corpus_overlap, corpus_rows, generate_problems
from rlsft.models import MICRO_MODELS_DIR, load_model, load_tokenizer
from rlsft.runs.provenance import provenance
from rlsft.scoring.evaluate import EvalArgs, evaluate
from rlsft.scoring.tasks import build_prompt


@dataclass
class ModelShape:
    """Qwen2 architecture knobs (the same family as the real path's Qwen2.5)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2  # grouped-query attention, as in Qwen2.5
    intermediate_size: int = 384  # SwiGLU width
    max_positions: int = 256  # context length in tokens (prompt + completion)

    def __post_init__(self):
        sizes = {"hidden_size": self.hidden_size, "num_layers": self.num_layers, "num_heads": self.num_heads,
                 "num_kv_heads": self.num_kv_heads, "intermediate_size": self.intermediate_size, "max_positions": self.max_positions}
        for key, value in sizes.items():
            if value < 1:
                raise ValueError(f"{key} must be at least 1, got {value}")
        if self.hidden_size % self.num_heads:  # each head takes hidden_size / num_heads dimensions
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:  # grouped-query attention: whole groups of heads per KV head
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.num_kv_heads}")


@dataclass
class PretrainConfig:
    name: str  # model name, e.g. micro-student; default output folder is recipes/micro/models/<name>
    out_dir: str | None = None
    seed: int = 0
    # corpus
    n_documents: int = 60_000  # worked solutions of pretraining-region questions (world.in_pretraining_region)
    countdown_share: float = 0.3  # share of micro-countdown documents (rest micro-arith)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    arith: ArithConfig = field(default_factory=ArithConfig)
    countdown: CountdownConfig = field(default_factory=CountdownConfig)
    vocab_size: int = 1024
    # model
    model: ModelShape = field(default_factory=ModelShape)
    # training (documents are packed into blocks of `max_positions` tokens)
    batch_size: int = 32  # blocks per step
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    max_steps: int = 1500
    time_budget_minutes: float | None = None  # stop early when exceeded (the card records it)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    # held-out evaluation written to the card
    eval_n: int = 256  # problems per micro task (0: skip the evaluation)
    eval_samples: int = 8  # K for pass@K
    eval_temperature: float = 1.0
    max_new_tokens: int = 128

    def __post_init__(self):
        at_least = {"n_documents": (self.n_documents, 1), "vocab_size": (self.vocab_size, 256), "batch_size": (self.batch_size, 1),
                    "warmup_steps": (self.warmup_steps, 0), "max_steps": (self.max_steps, 1), "threads": (self.threads or 0, 0),
                    "eval_n": (self.eval_n, 0), "eval_samples": (self.eval_samples, 1), "max_new_tokens": (self.max_new_tokens, 1)}
        for key, (value, low) in at_least.items():  # vocab_size: byte-level BPE starts from the 256 bytes
            if value < low:
                raise ValueError(f"{key} must be at least {low}, got {value}")
        if not 0.0 <= self.countdown_share <= 1.0:
            raise ValueError(f"countdown_share must be in [0, 1], got {self.countdown_share}")
        if not self.learning_rate > 0 or (self.time_budget_minutes is not None and not self.time_budget_minutes > 0):
            raise ValueError(f"learning_rate and time_budget_minutes must be positive, got {self.learning_rate} and {self.time_budget_minutes}")
        if self.eval_temperature < 0:
            raise ValueError(f"eval_temperature must be at least 0, got {self.eval_temperature}")


def token_blocks(tokenizer, texts: list[str], block: int):
    """The corpus as training blocks: documents joined by EOS, then cut into `block`-token rows
    ([n_blocks, block], the tail dropped); and the corpus's token count. A document longer than a
    block is refused."""
    import torch

    eos = tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    longest = max(len(x) + 1 for x in ids)
    if longest > block:
        raise UserError(f"a corpus document has {longest} tokens > model.max_positions={block}")
    stream = [t for x in ids for t in (*x, eos)]
    return torch.tensor(stream[: len(stream) // block * block]).view(-1, block), len(stream)


def model_config(shape: ModelShape, tokenizer):
    """The micro model's Qwen2 config: `shape`, the tokenizer's vocabulary, tied embeddings, EOS as BOS."""
    from transformers import Qwen2Config

    eos = tokenizer.eos_token_id
    return Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=shape.hidden_size, num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads, num_key_value_heads=shape.num_kv_heads, intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_positions, tie_word_embeddings=True, eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=eos,
    )


def evaluate_saved(folder: Path, cfg: PretrainConfig) -> dict:
    """The saved model (as users load it) on both micro tasks: the card's metrics per task ({} when
    cfg.eval_n is 0); the evaluation's own files are not kept."""
    model, tokenizer = load_model(str(folder)), load_tokenizer(str(folder))
    evals = {}
    for task in ("micro-arith", "micro-countdown") if cfg.eval_n > 0 else ():
        res = evaluate(
            EvalArgs(model=str(folder), task=task, out=str(folder / "eval" / task), n=cfg.eval_n, samples=cfg.eval_samples,
                     temperature=cfg.eval_temperature, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed),
            model=model, tokenizer=tokenizer,
        )
        m = res["metrics"]
        evals[task] = {k: m[k] for k in m if k.startswith(("pass@", "maj@")) or k in ("format_rate", "mixing_rate", "mean_consistency", "mean_length", "truncation_rate")}
        shutil.rmtree(folder / "eval" / task)
    shutil.rmtree(folder / "eval", ignore_errors=True)
    return evals


def check_out(out: Path) -> None:
    """Refuse, before anything is built, an output that `publish` must not replace: a file, or a
    folder that holds anything but a micro model (no rlsft_card.json), which would be deleted whole."""
    if out.exists() and not (out.is_dir() and ((out / "rlsft_card.json").is_file() or not any(out.iterdir()))):
        raise UserError(f"out_dir {out} exists and is no micro model folder (no rlsft_card.json); name a new or empty folder")


def publish(staging: Path, out: Path) -> None:
    """Move the finished model folder into place, readable by all. An older model there is renamed
    aside first and deleted after, so `out` always holds a whole model: the old or the new."""
    old = None
    if out.exists():
        check_out(out)  # again: it may have changed during training
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
        os.replace(out, old / "model")
    os.replace(staging, out)
    out.chmod(0o755)  # mkdtemp makes 0700
    for f in out.iterdir():
        f.chmod(0o644)
    if old:
        shutil.rmtree(old)


def pretrain_trainer(cfg: PretrainConfig, model, blocks, work: Path, t_start: float):
    """transformers' Trainer over the token blocks (next-token loss on every position), cosine
    schedule, AdamW; and its time-budget callback, which stops training once
    `cfg.time_budget_minutes` of wall clock since `t_start` are spent."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            return {"input_ids": blocks[i], "labels": blocks[i]}

    class TimeBudget(TrainerCallback):
        """Stop when the wall-clock budget is spent (the LR schedule assumes max_steps)."""

        stopped_early = False

        def on_step_end(self, args, state, control, **kw):
            if cfg.time_budget_minutes and time.time() - t_start > 60 * cfg.time_budget_minutes:
                control.should_training_stop = TimeBudget.stopped_early = True

    args = TrainingArguments(
        output_dir=str(work),
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=cfg.warmup_steps,
        max_steps=cfg.max_steps,
        weight_decay=0.1,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        logging_steps=25,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        seed=cfg.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    budget = TimeBudget()
    return Trainer(model=model, args=args, train_dataset=Blocks(), callbacks=[budget]), budget


def main(cfg: PretrainConfig) -> Path:
    """Pretrain with `cfg.threads` torch threads (0: torch's default), then give the caller back its
    own count: an in-process caller (a test, a study) would otherwise train its later runs on another
    thread count, and so with other float sums."""
    import torch

    threads = torch.get_num_threads()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        return pretrain(cfg)
    finally:
        torch.set_num_threads(threads)


def pretrain(cfg: PretrainConfig) -> Path:
    import torch
    from transformers import Qwen2ForCausalLM

    t_start = time.time()
    out = Path(cfg.out_dir) if cfg.out_dir else MICRO_MODELS_DIR / cfg.name
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)  # the staging folder sits beside `out`: one file system, one rename
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    # ------------------------------------------------------------------ corpus
    rows = corpus_rows(cfg.n_documents, cfg.seed, cfg.corpus, cfg.arith, cfg.countdown, cfg.countdown_share)
    # The completion follows "Assistant:" with no space: it opens with the added token <think>, so the
    # joint tokenization equals prompt tokens + completion tokens, exactly what TRL and generation see.
    texts = [build_prompt(r["question"]) + r["completion"] for r in rows]

    # ------------------------------------------------------------------ tokenizer

    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    blocks, corpus_tokens = token_blocks(tokenizer, texts, cfg.model.max_positions)
    block = cfg.model.max_positions
    if len(blocks) < cfg.batch_size:
        raise UserError(f"the corpus of {len(rows)} documents ({corpus_tokens} tokens) makes {len(blocks)} blocks of {block} tokens, "
                        f"fewer than one batch of {cfg.batch_size}; raise n_documents")

    # ------------------------------------------------------------------ model
    model = Qwen2ForCausalLM(model_config(cfg.model, tokenizer))

    # ------------------------------------------------------------------ trainer
    work = Path(tempfile.mkdtemp(prefix=f"rlsft-pretrain-{cfg.name}-"))
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        return train_and_publish(cfg, rows, tokenizer, blocks, corpus_tokens, model, work, staging, out, t_start)
    finally:  # the work and staging folders never outlive the command (the staging one is `out` once published)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def train_and_publish(cfg: PretrainConfig, rows, tokenizer, blocks, corpus_tokens: int, model, work: Path, staging: Path, out: Path,
                      t_start: float) -> Path:
    """Train, save to `staging`, evaluate the saved weights, write the card, publish to `out`."""
    import torch

    block = cfg.model.max_positions
    n_params = sum(p.numel() for p in model.parameters())
    trainer, budget = pretrain_trainer(cfg, model, blocks, work, t_start)

    # ------------------------------------------------------------------ train
    t_train = time.time()
    trainer.train()
    train_seconds = time.time() - t_train
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    steps_done = trainer.state.global_step

    # ------------------------------------------------------------------ save (bf16 safetensors, written to a staging folder then moved)
    model.config.use_cache = True  # the Trainer turned it off; generation needs the KV cache
    model.to(torch.bfloat16).save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)

    # ------------------------------------------------------------------ evaluate (the saved weights, as users load them)
    evals = evaluate_saved(staging, cfg)

    # ------------------------------------------------------------------ card
    languages = {lang: sum(r["language"] == lang for r in rows) / len(rows) for lang in ("en", "zh", "mixed")}
    card = {
        "name": cfg.name,
        "architecture": "Qwen2ForCausalLM",
        "parameters": n_params,
        "vocabulary": len(tokenizer),  # vocab_size's merges plus the added tokens
        "weights_dtype": "bfloat16",
        "training_tokens": steps_done * cfg.batch_size * block,
        "corpus_tokens": corpus_tokens,
        "corpus_documents": len(rows),
        "corpus_correct_share": sum(r["correct"] for r in rows) / len(rows),
        "corpus_language_shares_realised": languages,
        "steps": steps_done,
        "stopped_by_time_budget": budget.stopped_early,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds_total": round(time.time() - t_start, 1),
        "threads": torch.get_num_threads(),
        "loss_curve": losses,
        "config": to_dict(cfg),
        "generation": {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.eval_temperature},
        "eval": evals,
        "provenance": provenance(),
    }
    atomic_write(staging / "rlsft_card.json", to_json(card))
    atomic_write(staging / "README.md", model_card_markdown(card))
    publish(staging, out)
    print(f"saved {cfg.name} ({n_params / 1e6:.2f}M params) to {out}")
    return out


def model_card_markdown(card: dict) -> str:
    """The human model card, from the machine card (nothing in it is typed by hand)."""
    c = card["config"]
    lines = [
        f"# {card['name']}",
        "",
        f"A micro base model of the rlsft lab, pretrained by `rlsft pretrain` on the bilingual micro corpus. "
        f"Written by the command on {card['provenance']['time_utc']} at commit `{card['provenance']['git_commit']}`.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | {card['architecture']}, {c['model']['num_layers']} layers, hidden {c['model']['hidden_size']}, "
        f"{c['model']['num_heads']} heads ({c['model']['num_kv_heads']} KV), context {c['model']['max_positions']} |",
        f"| parameters | {card['parameters']:,} |",
        f"| vocabulary | {card.get('vocabulary', c['vocab_size'])} (byte-level BPE) |",
        f"| training tokens | {card['training_tokens']:,} ({card['steps']} steps of {c['batch_size']} x {c['model']['max_positions']}) |",
        f"| corpus | {card['corpus_documents']:,} documents, {card['corpus_tokens']:,} tokens, {card['corpus_correct_share']:.3f} of solutions correct |",
        f"| language shares (set) | {c['corpus']['language_shares']} |",
        f"| language shares (realised) | { {k: round(v, 3) for k, v in card['corpus_language_shares_realised'].items()} } |",
        f"| per-step error rate by language | {c['corpus']['error_rate']} |",
        f"| switch rate (mixed solutions) | {c['corpus']['switch_rate']} |",
        f"| arithmetic difficulty | {c['arith']} |",
        f"| countdown difficulty | {c['countdown']}, share {c['countdown_share']} |",
        f"| wall time | {card['wall_seconds_total'] / 60:.1f} min in all, {card['train_seconds'] / 60:.1f} min training, {card['threads']} CPU threads |",
        "",
        f"## Held-out evaluation ({c['eval_n']} test-split problems per task, {c['eval_samples']} samples each, temperature {c['eval_temperature']})",
        "",
        "| task | pass@1 | pass@" + str(c["eval_samples"]) + " | maj@" + str(c["eval_samples"]) + " | format | mixing | consistency | length |",
        "|---|---|---|---|---|---|---|---|",
    ]
    k = c["eval_samples"]
    for task, m in card["eval"].items():
        def f(key):
            v = m.get(key)
            return f"{v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" if v and v.get("value") is not None else "n/a"

        lines.append(f"| {task} | {f('pass@1')} | {f(f'pass@{k}')} | {f(f'maj@{k}')} | {f('format_rate')} | {f('mixing_rate')} | {f('mean_consistency')} | {m['mean_length']['value']:.1f} |")
    lines += ["", "Brackets are 95% bootstrap intervals over problems. Rebuild with `rlsft pretrain` and the config above.", ""]
    return "\n".join(lines)


def overlap(cfg: PretrainConfig, n: int) -> dict:
    """The corpus's overlap with `n` problems of each split of each task (seed 0, the sets that
    evaluation and RL read first): the share of problems whose exact question is a corpus document,
    and the share whose step chain is, in any wording (`world.corpus_overlap`)."""
    rows = corpus_rows(cfg.n_documents, cfg.seed, cfg.corpus, cfg.arith, cfg.countdown, cfg.countdown_share)
    out = {"model": cfg.name, "corpus_documents": len(rows), "problems_per_split": n}
    for task, kw in (("micro-arith", {"arith": cfg.arith}), ("micro-countdown", {"countdown": cfg.countdown})):
        for split in ("train", "validation", "test"):
            out[f"{task}/{split}"] = corpus_overlap(rows, generate_problems(task, split, n, 0, **kw))
    return out


def pretrain_from_config(path: str, overrides: list[str], overlap_n: int | None = None) -> Path | dict:
    cfg = load_config(PretrainConfig, path, overrides)
    return overlap(cfg, overlap_n) if overlap_n else main(cfg)
