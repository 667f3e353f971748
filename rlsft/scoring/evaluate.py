"""Scoring and evaluation: `rlsft score` (completions from anywhere) and `rlsft eval` (generate
with a model, then score). Both write their outputs atomically.

    rlsft score --task gsm8k --completions IN.jsonl --out OUT.jsonl
    rlsft eval --model micro-student --task micro-arith --n 256 --samples 8 --out runs/eval-student
"""

from __future__ import annotations

import base64
import contextlib
import gc
import hashlib
import importlib.util
import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from rlsft.io import UserError, atomic_write, read_jsonl, to_json, to_jsonl
from rlsft.models import load_model, load_tokenizer, resolve_model
from rlsft.runs.provenance import provenance
from rlsft.scoring.language import LANGUAGE_SCRIPTS, language_stats
from rlsft.scoring.metrics import mean, summarise
from rlsft.scoring.pool import FAILURES, TIMEOUTS, check_many
from rlsft.scoring.tasks import ANSWER_STOP, THINK_PREFILL, Task, build_prompt, get_task, render_prompt, resolve_template
from rlsft.scoring.verify import extract_answer, format_ok, same_answer


def score_samples(task: Task, completions: list[str], golds: list[str], languages: list[str]) -> list[dict]:
    """The per-sample scores of a batch (answers checked in worker processes): `correct` under
    strict extraction, `correct_lenient` under lenient extraction (the same grader the rewards
    use; see rlsft.scoring.verify), format and language.

    >>> from rlsft.scoring.tasks import get_task
    >>> score_samples(get_task("gsm8k"), ["<think> six times twelve is 72 </think> <answer>72</answer>", "so 72"], ["72"] * 2, ["en"] * 2)
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'correct': True, 'correct_lenient': True, 'format_ok': True, 'language_consistency': 1.0, 'mixed': False},
     {'correct': False, 'correct_lenient': True, 'format_ok': False, 'language_consistency': 1.0, 'mixed': False}]
    """
    correct = task.verify_many(completions, golds)
    # lenient extraction reads exactly what strict does when strict finds an answer; only the rest is checked again
    again = [i for i, c in enumerate(completions) if extract_answer(c) is None]
    lenient = list(correct)
    for i, ok in zip(again, task.verify_many([completions[i] for i in again], [golds[i] for i in again], "lenient")):
        lenient[i] = ok
    out = []
    for completion, ok, ok_lenient, language in zip(completions, correct, lenient, languages):
        stats = language_stats(completion, language)
        out.append({"correct": ok, "correct_lenient": ok_lenient, "format_ok": format_ok(completion),
                    "language_consistency": stats.consistency, "mixed": stats.mixed})
    return out


def check_language(language: str) -> str:
    if language not in LANGUAGE_SCRIPTS:
        raise UserError(f"unknown language {language!r}; valid: {', '.join(sorted(LANGUAGE_SCRIPTS))}")
    return language


def score_file(task_name: str, completions_path: str, out_path: str, language: str | None = None) -> dict:
    """Score a JSONL of `{completion, answer[, prompt, language]}`; write the rows plus scores to
    `out_path` and return the summary."""
    task = get_task(task_name)
    default_language = check_language(language or task.language)
    if Path(out_path).resolve() == Path(completions_path).resolve():
        raise UserError(f"--out {out_path}: the completions file itself; scoring would overwrite its input")
    rows = read_jsonl(completions_path, required=("completion", "answer"))
    if not rows:
        raise UserError(f"{completions_path}: no records to score")
    for i, r in enumerate(rows, start=1):
        if not isinstance(r["completion"], str):
            raise UserError(f"{completions_path}: record {i}: 'completion' must be a string")
        if "language" in r:
            check_language(r["language"])

    t0, timeouts, failures = time.perf_counter(), TIMEOUTS["count"], FAILURES["count"]
    scores = score_samples(task, [r["completion"] for r in rows], [str(r["answer"]) for r in rows],
                           [r.get("language", default_language) for r in rows])
    seconds = time.perf_counter() - t0
    scored = [{**r, **s} for r, s in zip(rows, scores)]
    atomic_write(out_path, to_jsonl(scored))
    verifiable = [s for s in scored if s["correct"] is not None]
    consistency = [s["language_consistency"] for s in scored if s["language_consistency"] is not None]
    return {
        "task": task.name,
        "n": len(scored),
        "n_verifiable": len(verifiable),
        "n_unverifiable": len(scored) - len(verifiable),
        "accuracy": mean([float(s["correct"]) for s in verifiable]),  # strict extraction
        "accuracy_lenient": mean([float(s["correct_lenient"]) for s in scored if s["correct_lenient"] is not None]),
        "format_rate": mean([float(s["format_ok"]) for s in scored]),
        "mixing_rate": mean([float(s["mixed"]) for s in scored]),
        "mean_consistency": mean(consistency),
        "n_correct": sum(bool(s["correct"]) for s in scored),
        "n_correct_lenient": sum(bool(s["correct_lenient"]) for s in scored),
        "n_format_ok": sum(s["format_ok"] for s in scored),
        "n_mixed": sum(s["mixed"] for s in scored),
        "n_timeouts": TIMEOUTS["count"] - timeouts,  # checks that ran out of time (scored None)
        "n_check_failures": FAILURES["count"] - failures,  # checks that raised (scored None; a verifier bug)
        "scoring_seconds": round(seconds, 3),  # wall time of the checks and the language metric
    }


def answer_groups(per_problem: list[list[str | None]]) -> list[list[int | None]]:
    """Per problem, each sample's answer group: equivalent answers share one (`same_answer`, checked
    in worker processes); groups are numbered by first appearance; None for no answer.

    >>> answer_groups([["0.5", "1/2", "3", None, "3"]])
    [[0, 0, 1, None, 1]]
    """
    distinct = [list(dict.fromkeys(a for a in answers if a)) for answers in per_problem]
    pairs = [(p, i, j) for p, ds in enumerate(distinct) for i in range(len(ds)) for j in range(i + 1, len(ds))]
    same = check_many(same_answer, [(distinct[p][i], distinct[p][j]) for p, i, j in pairs])
    parent = [list(range(len(ds))) for ds in distinct]  # union-find over each problem's distinct answers

    def root(p: int, i: int) -> int:
        while parent[p][i] != i:
            i = parent[p][i]
        return i

    for (p, i, j), ok in zip(pairs, same):
        if ok:
            a, b = root(p, i), root(p, j)
            parent[p][max(a, b)] = min(a, b)
    out = []
    for p, answers in enumerate(per_problem):
        roots = [root(p, distinct[p].index(a)) if a else None for a in answers]
        number = {r: n for n, r in enumerate(dict.fromkeys(r for r in roots if r is not None))}
        out.append([None if r is None else number[r] for r in roots])
    return out


@dataclass
class EvalArgs:
    model: str
    task: str
    out: str
    n: int | None = None  # problems (None: the whole eval split; 500 for micro tasks)
    split: str = "test"  # test, or validation (settings are chosen there, never on test)
    samples: int = 1  # K completions per problem
    temperature: float = 1.0  # 0 means greedy (then samples must be 1)
    top_p: float = 1.0
    max_new_tokens: int = 512
    batch_size: int | None = None  # sequences (prompts x samples) per generate call; None: sized from memory_gb
    memory_gb: float = 4.0  # generation memory budget that sizes the batch (KV cache, logits, activations)
    seed: int = 0
    language: str | None = None
    template: str = "auto"  # auto: chat when the model's tokenizer has a chat template, else r1-zero
    think_prefill: bool = False  # the prompt opens <think>; generation stops at </answer> (data.think_prefill)
    source: str | None = None  # local JSONL or hub id overriding the task's default data
    dtype: str = "auto"
    trust_remote_code: bool = False
    revision: str | None = None  # a hub branch, tag or commit of `model` (model.revision)
    backend: str = "transformers"  # generation: transformers, vllm (a GPU with vLLM), or auto (vllm where it can run)


MAX_SEQUENCES = 512  # most sequences per generate call on a GPU: every sequence of a call waits for
# its longest, so bigger calls waste more steps on finished ones
# On a CPU, calls past 64 sequences run slower per token, and re-batching unfinished sequences
# costs more (their re-prefill) than waiting for them: a sweep on micro-student, one thread, 256
# problems, 128 new tokens (docs/reliability-and-speed.md) ran fastest at 64 sequences in one round.
CPU_MAX_SEQUENCES = 64


def bytes_per_sequence(config, prompt_tokens: int, max_new_tokens: int, dtype_bytes: int) -> int:
    """Memory one sequence holds during `generate` (bytes): its KV cache at full length, the
    last-token logits in float32 with the samplers' copies, and the prefill's activations.

    >>> from transformers import Qwen2Config
    >>> c = Qwen2Config(hidden_size=128, num_hidden_layers=5, num_attention_heads=4, num_key_value_heads=2,
    ...                 intermediate_size=384, vocab_size=1024)
    >>> bytes_per_sequence(c, 64, 128, 4)  # 2 (K, V) x 5 layers x 2 heads x 32 dims x 192 tokens x 4 B + ...
    999424
    """
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    tokens = prompt_tokens + max_new_tokens
    kv_cache = 2 * c.num_hidden_layers * kv_heads * head_dim * tokens * dtype_bytes
    logits = 4 * c.vocab_size * 4  # float32 scores, softmax, top-p sort and its indices
    prefill = prompt_tokens * (4 * c.hidden_size + 3 * c.intermediate_size) * dtype_bytes \
        + c.num_attention_heads * prompt_tokens**2 * dtype_bytes  # one layer's activations and attention scores
    return kv_cache + logits + prefill


def sequences_per_call(model, prompt_tokens: int, max_new_tokens: int, memory_gb: float, n_sequences: int) -> int:
    """Sequences per generate call: as many as `memory_gb` holds (with a 2x margin for the
    allocator), at most `MAX_SEQUENCES` (`CPU_MAX_SEQUENCES` on a CPU) and the number wanted. A
    function of the settings, the model and its device type alone, never of the memory free right
    now, so a seed gives the same samples on any machine of that type."""
    dtype_bytes = next(model.parameters()).element_size()
    per = bytes_per_sequence(model.config, prompt_tokens, max_new_tokens, dtype_bytes)
    most = CPU_MAX_SEQUENCES if model.device.type == "cpu" else MAX_SEQUENCES
    return max(1, min(n_sequences, most, int(memory_gb * 1e9 / (2 * per))))


def even_calls(n_sequences: int, most: int) -> int:
    """Sequences per call for `n_sequences` in as few calls of at most `most` as possible, spread
    evenly: 64 sequences at most 56 a call run as 2 x 32, not 56 and a slow call of 8 (a small
    call decodes at a fraction of a full one's rate on a CPU).

    >>> even_calls(64, 56), even_calls(2048, 64), even_calls(10, 64)
    (32, 64, 10)
    """
    calls = -(-n_sequences // max(1, most))
    return max(1, -(-n_sequences // max(1, calls)))


def round_tokens(max_new_tokens: int) -> int:
    """Tokens a sequence generates per call before unfinished ones are re-batched (on a GPU; a CPU
    call runs to the end, see `CPU_MAX_SEQUENCES`).

    >>> round_tokens(128), round_tokens(1024)
    (32, 256)
    """
    return max(32, max_new_tokens // 4)


def save_progress(progress: Path, model, state: dict) -> None:
    """Write a generation's `state` (key, calls, seconds, queue, done) with the random generators'
    states, atomically, so `resume_progress` continues it as if uninterrupted."""

    import torch

    cuda = model.device.type == "cuda"
    state = {**state, "rng": base64.b64encode(bytes(torch.get_rng_state().tolist())).decode(),
             "cuda_rng": base64.b64encode(bytes(torch.cuda.get_rng_state(model.device).tolist())).decode() if cuda else None}
    atomic_write(progress, json.dumps(state))


def resume_progress(progress: Path | None, key: str, model) -> dict | None:
    """The saved state of the generation `key` at `progress`, with the random generators restored
    to it; None when there is none, or it belongs to other settings."""

    import torch

    if progress is None or not Path(progress).is_file():
        return None
    saved = json.loads(Path(progress).read_text())
    if saved.get("key") != key:
        return None
    torch.set_rng_state(torch.tensor(list(base64.b64decode(saved["rng"])), dtype=torch.uint8))
    if model.device.type == "cuda" and saved.get("cuda_rng"):
        torch.cuda.set_rng_state(torch.tensor(list(base64.b64decode(saved["cuda_rng"])), dtype=torch.uint8), model.device)
    return saved


def settle(batch: list, new: list[list[int]], max_new_tokens: int, eos: list[int], done: list, queue,
           stop_at: Callable[[list[int]], int | None] | None = None) -> int:
    """Sort a call's sequences: `(prompt index, tokens before)` in `batch`, `new` tokens each. Those
    that ended (any of the `eos` ids, or the token at which `stop_at` finds the stop string: up to
    and including it) or reached their budget go to `done` as (index, tokens, ended), the rest back
    to `queue`; returns how many finished. A stop is read from the tokens, not from a filler EOS:
    transformers fills none after the call's last row to stop, nor at the budget's last step.

    >>> done, queue = [], []
    >>> settle([(0, []), (1, [5])], [[7, 2, 9], [8, 8]], 4, [2], done, queue), done, queue
    (1, [(0, [7, 2], True)], [(1, [5, 8, 8])])
    >>> done, queue = [], []
    >>> settle([(0, [])], [[4, 6, 3]], 8, [2], done, queue, stop_at=lambda t: t.index(6) if 6 in t else None), done
    (1, [(0, [4, 6], True)])
    """
    finished = 0
    for (i, before), row in zip(batch, new):
        tokens = before + row[: max_new_tokens - len(before)]  # a sequence never passes its own budget
        end = next((k for k, t in enumerate(tokens) if t in eos), None)
        stopped = stop_at(tokens) if stop_at is not None else None
        if stopped is not None and (end is None or stopped < end):
            done.append((i, tokens[: stopped + 1], True))
        elif end is not None:
            done.append((i, tokens[: end + 1], True))
        elif len(tokens) >= max_new_tokens:
            done.append((i, tokens, False))
        else:
            queue.append((i, tokens))
            continue
        finished += 1
    return finished


def finished_samples(done: list, n_prompts: int, tokenizer, eos: list[int], prefill: str, stopped_at_answer: bool) -> list[list[dict]]:
    """Per prompt, its samples {text, length, truncated} from `generate`'s finished sequences
    (prompt index, tokens, ended), in the order they finished: the text without its EOS, with the
    prefill, and cut at `</answer>` when generation stopped there (the stop's last token may carry
    more text, "</answer>.": cut as vLLM cuts it)."""
    out: list[list[dict]] = [[] for _ in range(n_prompts)]
    for i, tokens, ended in done:
        text = tokenizer.decode(tokens[:-1] if ended and tokens[-1] in eos else tokens, skip_special_tokens=True)
        if stopped_at_answer and ANSWER_STOP in text:
            text = text[: text.index(ANSWER_STOP) + len(ANSWER_STOP)]
        out[i].append({"text": prefill + text, "length": len(tokens), "truncated": not ended})
    return out


def first_stop(tokens: list[int], tokenizer, stop: str) -> int | None:
    """The index of the token whose text completes `stop` in the decoded `tokens`; None when the
    text never holds it. A binary search: a decoded prefix only grows as tokens are added.

    >>> from rlsft.models import load_tokenizer
    >>> tok = load_tokenizer("micro-student")
    >>> ids = tok("<answer> 7 </answer> and more", add_special_tokens=False)["input_ids"]
    >>> k = first_stop(ids, tok, "</answer>"); tok.decode(ids[: k + 1]).endswith("</answer>"), first_stop(ids[:2], tok, "</answer>")
    (True, None)
    """
    if stop not in tokenizer.decode(tokens, skip_special_tokens=True):
        return None
    low, high = 0, len(tokens) - 1
    while low < high:
        mid = (low + high) // 2
        if stop in tokenizer.decode(tokens[: mid + 1], skip_special_tokens=True):
            high = mid
        else:
            low = mid + 1
    return low


@contextlib.contextmanager
def plain_generation_config(model):
    """The model's generation_config reduced to its special tokens while evaluation samples, put
    back after: transformers fills every setting a call leaves unset from it, so a model's
    `no_repeat_ngram_size`, `min_new_tokens`, `bad_words_ids`, suppressed or forced tokens,
    `typical_p` or `min_p` would shape the samples (vLLM applies none of them).

    >>> from types import SimpleNamespace as NS
    >>> from transformers import GenerationConfig
    >>> m = NS(generation_config=GenerationConfig(eos_token_id=2, no_repeat_ngram_size=3))
    >>> with plain_generation_config(m):
    ...     m.generation_config.no_repeat_ngram_size, m.generation_config.eos_token_id
    (None, 2)
    >>> m.generation_config.no_repeat_ngram_size
    3
    """
    from transformers import GenerationConfig

    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper's generate reads its base model's
    kept = getattr(model, "generation_config", None)
    if kept is None:
        yield
        return
    model.generation_config = GenerationConfig(bos_token_id=kept.bos_token_id, eos_token_id=kept.eos_token_id,
                                               pad_token_id=kept.pad_token_id)
    try:
        yield
    finally:
        model.generation_config = kept


def stop_ids(model, tokenizer) -> list[int]:
    """The tokens that end a completion, as TRL's GRPO trainer stops its rollouts: the tokenizer's
    EOS, then those of the model's generation_config (Qwen2.5-Instruct's lists `<|im_end|>` and
    `<|endoftext|>`), so that evaluation ends a completion where training did.

    >>> from types import SimpleNamespace as NS
    >>> stop_ids(NS(generation_config=NS(eos_token_id=[7, 3])), NS(eos_token_id=3)), stop_ids(NS(), NS(eos_token_id=3))
    ([3, 7], [3])
    >>> stop_ids(NS(generation_config=NS(eos_token_id=7)), NS(eos_token_id=None))  # a tokenizer without an EOS
    [7]
    """
    config = getattr(model, "generation_config", None)
    more = getattr(config, "eos_token_id", None)
    more = [] if more is None else [more] if isinstance(more, int) else list(more)
    return [e for e in dict.fromkeys([tokenizer.eos_token_id, *more]) if e is not None]


def generate(model, tokenizer, prompts: list, samples: int, temperature: float, top_p: float, max_new_tokens: int,
             batch_size: int | None = None, memory_gb: float = 4.0, desc: str = "generate", stats: dict | None = None,
             tokens_per_round: int | None = None, think_prefill: bool = False, progress: Path | None = None,
             progress_key: str = ""):
    """K completions per prompt. Returns, per prompt, K dicts {text, length, truncated}.

    `prompts` are strings or chat message lists (rendered with the tokenizer's chat template).
    Lengths count generated tokens up to and including EOS. With `think_prefill`, each prompt ends
    in `<think>`, each text starts with it (the whole assistant turn, as it is scored), and a
    sequence also ends at `</answer>`.

    Batching is by *sequences* (prompt x sample), not prompts. A queue holds every sequence,
    longest prompt first; each `generate` call takes up to `batch_size` of them (default: as many
    as `memory_gb` holds, see `sequences_per_call`) and runs `tokens_per_round` steps (default: on a
    GPU `round_tokens(max_new_tokens)`, on a CPU all of them, through `rlsft.scoring.decode`, where a
    finished sequence leaves the batch). Unfinished ones go back to the queue with their tokens so
    far as prefix; continuing from a prefix is the same autoregressive sampling, and the queue's
    order is fixed, so a seed gives the same samples.
    `stats`, if given, receives the batch size, calls, prompt and generated token counts and the
    generation's wall seconds (a continued generation's earlier sittings included).

    `progress`, if given, is a file rewritten (atomically) after every call with the finished
    sequences, the queue and the random generator's state: a generation killed part way (a study's
    session ending mid-evaluation) continues from its last call on the next invocation and gives
    the samples it would have given uninterrupted. The file is kept only while its settings match
    (prompts, samples, sampling, batching; the caller names the model in `progress_key`).
    """

    import torch

    from rlsft.scoring import decode  # imports torch at its top

    prefill = THINK_PREFILL if think_prefill else ""
    texts = [render_prompt(p, tokenizer, prefill) for p in prompts]
    # a sequence stopped at </answer> is filled with EOS by generate, so it ends like any other
    stop = {"stop_strings": [ANSWER_STOP], "tokenizer": tokenizer} if think_prefill else {}
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))  # stable: ties keep prompt order
    queue = deque((i, []) for i in order for _ in range(samples))  # (prompt index, tokens generated so far)
    longest = max((len(x) for x in ids), default=0)
    size = batch_size or even_calls(len(queue), sequences_per_call(model, longest, max_new_tokens, memory_gb, len(queue)))
    per_round = tokens_per_round or (max_new_tokens if model.device.type == "cpu" else round_tokens(max_new_tokens))
    eos, pad = stop_ids(model, tokenizer), tokenizer.pad_token_id
    done: list[tuple[int, list[int], bool]] = []  # (prompt index, tokens, ended with EOS), in finishing order
    calls, earlier_seconds, t0 = 0, 0.0, time.time()  # earlier_seconds: sittings before this one, s
    key = hashlib.sha256(json.dumps([progress_key, texts, samples, temperature, top_p, max_new_tokens, size, per_round]).encode()).hexdigest()
    saved = resume_progress(progress, key, model)  # the same generation, cut short: continue from its last call
    if saved is not None:
        queue, done = deque((i, g) for i, g in saved["queue"]), [(i, t, e) for i, t, e in saved["done"]]
        calls, earlier_seconds = saved["calls"], saved.get("seconds", 0.0)
    model.eval()
    bar = tqdm(total=len(queue) + len(done), initial=len(done), desc=desc, unit="seq")
    with plain_generation_config(model):  # only the sampling asked for here, none of the model's own settings
        while queue:
            batch = [queue.popleft() for _ in range(min(size, len(queue)))]
            steps = min(per_round, max(max_new_tokens - len(g) for _, g in batch))
            enc = tokenizer.pad({"input_ids": [ids[i] + g for i, g in batch]}, return_tensors="pt").to(model.device)
            with torch.no_grad():
                sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 else {"do_sample": False}
                # top_k=0: plain sampling, no hidden top-k=50 default; repetition_penalty=1.0: none of the
                # model's own (Qwen2.5-Instruct's generation_config.json asks 1.1), as TRL's training and vLLM sample
                sampling["repetition_penalty"] = 1.0
                gen = decode.generate(model, enc["input_ids"], enc["attention_mask"], None, **sampling, max_new_tokens=steps,
                                      pad_token_id=eos[0] if stop else pad, eos_token_id=eos, **stop)
            calls += 1
            bar.update(settle(batch, gen[:, enc["input_ids"].shape[1] :].tolist(), max_new_tokens, eos, done, queue,
                              (lambda t: first_stop(t, tokenizer, ANSWER_STOP)) if stop else None))
            if progress is not None and queue:
                save_progress(progress, model, {"key": key, "calls": calls, "seconds": earlier_seconds + time.time() - t0,
                                                "queue": list(queue), "done": done})
    bar.close()
    out = finished_samples(done, len(texts), tokenizer, eos, prefill, bool(stop))
    if stats is not None:
        stats.update(sequences_per_call=size, calls=calls, sequences=len(done), round_tokens=per_round,
                     prompt_tokens=samples * sum(len(x) for x in ids), generated_tokens=sum(len(t) for _, t, _ in done),
                     seconds=round(earlier_seconds + time.time() - t0, 2))
    return out


BACKENDS = ("auto", "transformers", "vllm")


def resolve_backend(backend: str) -> str:
    """The generation backend to use: `auto` is vllm where vLLM is installed and a GPU is present,
    transformers' `generate` otherwise; `vllm` without either is a one-line error.

    >>> resolve_backend("transformers")
    'transformers'
    """

    if backend not in BACKENDS:
        raise UserError(f"generation backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "transformers":
        return backend
    import torch

    usable = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if backend == "vllm" and not usable:
        missing = "vLLM is not installed (pip install -e '.[vllm]')" if importlib.util.find_spec("vllm") is None else "no CUDA GPU is present"
        raise UserError(f"generation backend vllm asked for, but {missing}; use transformers or auto")
    return "vllm" if usable else "transformers"


def sampling_params(samples: int, temperature: float, top_p: float, max_new_tokens: int, seed: int, think_prefill: bool) -> dict:
    """The lab's sampling settings as vLLM `SamplingParams` fields: n samples a prompt, plain
    sampling (no top-k), seeded; with a think prefill, generation stops after `</answer>` and keeps
    it, as `generate`'s stop string does. Greedy (temperature 0) is one sample.

    >>> sampling_params(4, 0.6, 0.95, 512, 0, True)
    {'n': 4, 'temperature': 0.6, 'top_p': 0.95, 'max_tokens': 512, 'seed': 0, 'stop': ['</answer>'], 'include_stop_str_in_output': True}
    >>> sampling_params(1, 0.0, 1.0, 64, 3, False)
    {'n': 1, 'temperature': 0.0, 'top_p': 1.0, 'max_tokens': 64, 'seed': 3}
    """
    params = {"n": samples, "temperature": temperature, "top_p": top_p, "max_tokens": max_new_tokens, "seed": seed}
    if think_prefill:
        params.update(stop=[ANSWER_STOP], include_stop_str_in_output=True)
    return params


def prompt_seed(seed: int, index: int) -> int:
    """vLLM's per-request seed for prompt `index` of a run seeded `seed`: distinct across prompts
    and, for seeds below 1,000,003, across seeds.

    >>> [prompt_seed(0, i) for i in range(3)], prompt_seed(1, 0)
    ([0, 1000003, 2000006], 1)
    """
    return seed + 1_000_003 * index


VLLM_HEADROOM = 0.05  # share of the GPU's memory vLLM leaves free beside what it finds free at start


def vllm_memory_share(free_bytes: int, total_bytes: int) -> float:
    """vLLM's `gpu_memory_utilization` (the share of the whole GPU it may take, weights included):
    what is free when it starts, less a margin, at most 0.9. Inside a run the trainer, its
    optimizer state and TRL's own vLLM engine still hold memory, so a fixed share could exceed
    what is left.

    >>> vllm_memory_share(20 * 2**30, 24 * 2**30)
    0.783
    >>> vllm_memory_share(80 * 2**30, 80 * 2**30)
    0.9
    >>> vllm_memory_share(2**30, 24 * 2**30)
    Traceback (most recent call last):
    rlsft.io.UserError: vLLM generation needs free GPU memory: 1.0 of 24.0 GiB is free; use backend transformers
    """
    share = min(0.9, round(free_bytes / total_bytes - VLLM_HEADROOM, 3))
    if share < 0.05:
        raise UserError(f"vLLM generation needs free GPU memory: {free_bytes / 2**30:.1f} of {total_bytes / 2**30:.1f} GiB is free; "
                        "use backend transformers")
    return share


def vllm_generate(model_path: str, tokenizer, prompts: list, samples: int, temperature: float, top_p: float, max_new_tokens: int,
                  seed: int, think_prefill: bool = False, stats: dict | None = None, revision: str | None = None,
                  dtype: str = "auto") -> list[list[dict]]:
    """`generate`'s result from vLLM's `LLM.generate` (one call, vLLM batches): per prompt, K dicts
    {text, length, truncated}. The model is loaded from `model_path` at `revision` (saved weights:
    vLLM cannot read a model in memory), in `dtype`, into the GPU memory free at the call
    (`vllm_memory_share`), and freed afterwards. Not run on the lab's CPU machines (docs/recipes.md)."""

    import torch
    from vllm import LLM, SamplingParams

    prefill = THINK_PREFILL if think_prefill else ""
    # token ids as `generate` reads them: a rendered chat template already holds its BOS, which
    # vLLM's own tokenization would add again
    if not prompts:
        return []
    ids = tokenizer([render_prompt(p, tokenizer, prefill) for p in prompts], add_special_tokens=False)["input_ids"]
    params = sampling_params(samples, temperature, top_p, max_new_tokens, seed, think_prefill)
    t0 = time.time()
    gc.collect()
    torch.cuda.empty_cache()  # the caller's freed tensors back to the device before measuring what is free
    # max_model_len: the longest request, not the model's whole context (131,072 tokens for
    # R1-Distill, whose KV cache alone would not fit beside a trainer)
    llm = LLM(model=model_path, revision=revision, dtype=dtype, seed=seed, max_model_len=max(map(len, ids)) + max_new_tokens,
              gpu_memory_utilization=vllm_memory_share(*torch.cuda.mem_get_info()))
    # each prompt its own seed: one seed for every request would draw every problem's samples from
    # the same random stream, correlating them across problems (the intervals assume independence)
    outs = llm.generate([{"prompt_token_ids": x} for x in ids],
                        [SamplingParams(**{**params, "seed": prompt_seed(seed, i)}) for i in range(len(ids))])
    groups = [[{"text": prefill + o.text, "length": len(o.token_ids), "truncated": o.finish_reason == "length"} for o in out.outputs]
              for out in outs]
    del llm
    gc.collect()
    torch.cuda.empty_cache()
    if stats is not None:
        stats.update(backend="vllm", sequences=sum(len(g) for g in groups), generated_tokens=sum(x["length"] for g in groups for x in g),
                     seconds=round(time.time() - t0, 2))
    return groups


def evaluate(args: EvalArgs, model=None, tokenizer=None) -> dict:
    """Generate K samples for each of n problems, score them, write `metrics.json` and
    `samples.jsonl` under `args.out`, and return the metrics dict."""
    import torch

    task = get_task(args.task)
    language = check_language(args.language or task.language)
    if args.samples < 1 or (args.n is not None and args.n < 1):
        raise UserError(f"n and samples must be at least 1, got n={args.n}, samples={args.samples}")
    if not args.max_new_tokens >= 1:
        raise UserError(f"max_new_tokens must be at least 1, got {args.max_new_tokens}")
    if not 0.0 < args.top_p <= 1.0:  # NaN fails too
        raise UserError(f"top_p must be in (0, 1], got {args.top_p}")
    if not args.temperature >= 0.0:
        raise UserError(f"temperature must be at least 0, got {args.temperature}")
    if args.temperature <= 0 and args.samples > 1:
        raise UserError("--temperature 0 (greedy) gives identical samples; use --samples 1")
    split = task.eval_split if args.split == "test" else task.validation_split
    if split is None:
        raise UserError(f"task {task.name!r} has no {args.split} split")
    backend = resolve_backend(args.backend)
    rows = task.load(split, source=args.source, n=args.n, seed=args.seed)
    tokenizer = tokenizer or load_tokenizer(args.model, args.trust_remote_code, args.revision)
    torch.manual_seed(args.seed)
    template = resolve_template(args.template, tokenizer)
    prompts = [build_prompt(r["question"], template) for r in rows]
    stats: dict = {}
    out = Path(args.out)
    progress = out / "generation.partial.json"  # a killed evaluation continues from here (see `generate`)
    if backend == "vllm":
        groups = vllm_generate(resolve_model(args.model), tokenizer, prompts, args.samples, args.temperature, args.top_p,
                               args.max_new_tokens, args.seed, args.think_prefill, stats, args.revision, args.dtype)
    else:
        groups = generate(model or load_model(args.model, args.dtype, args.trust_remote_code, args.revision), tokenizer, prompts, args.samples,
                          args.temperature, args.top_p, args.max_new_tokens, args.batch_size, args.memory_gb, desc=f"eval {task.name}",
                          stats=stats, think_prefill=args.think_prefill, progress=progress, progress_key=f"{args.model} seed={args.seed}")

    flat = [(r, j, g) for r, group in zip(rows, groups) for j, g in enumerate(group)]
    timeouts, failures = TIMEOUTS["count"], FAILURES["count"]
    scores = score_samples(task, [g["text"] for _, _, g in flat], [r["answer"] for r, _, _ in flat], [language] * len(flat))
    samples = [{"id": r["id"], "sample": j, "question": r["question"], "answer": r["answer"], "completion": g["text"], **score,
                "extracted": extract_answer(g["text"]), "length": g["length"], "truncated": g["truncated"]}
               for (r, j, g), score in zip(flat, scores)]
    per_problem = [samples[i * args.samples:(i + 1) * args.samples] for i in range(len(rows))]
    for group, ids in zip(per_problem, answer_groups([[s["extracted"] for s in group] for group in per_problem])):
        for sample, answer_group in zip(group, ids):
            sample["answer_group"] = answer_group  # maj@k votes by equivalence
    ks = sorted({1, args.samples} | {k for k in (2, 4, 8, 16, 32, 64) if k <= args.samples})
    result = {
        "model": args.model,
        "task": task.name,
        "split": split,
        "language": language,
        "n_problems": len(rows),
        "samples_per_problem": args.samples,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "template": template,  # the form used (auto resolved)
        "think_prefill": args.think_prefill,
        "generation_seconds": stats["seconds"],  # every sitting of a continued evaluation
        "generation": stats,  # sequences per call, calls, prompt and generated tokens
        "metrics": summarise(per_problem, ks=ks, seed=args.seed),
        # answer checks scored None: out of time, or raised (a verifier bug); a problem holding one leaves pass@k and maj@k
        "checks": {"timeouts": TIMEOUTS["count"] - timeouts, "failures": FAILURES["count"] - failures},
        "provenance": provenance(),
    }
    atomic_write(out / "samples.jsonl", to_jsonl(samples))
    atomic_write(out / "metrics.json", to_json(result))
    progress.unlink(missing_ok=True)
    return result
