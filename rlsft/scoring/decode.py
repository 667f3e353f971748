"""Sampling in which a finished sequence leaves the batch: `generate`'s tokens, fewer FLOPs.

transformers' `generate` keeps every sequence of a call in the batch until the longest one ends:
a sequence that wrote EOS at token 100 of a call that runs 256 steps is still computed for the
other 156 (and its output thrown away). On a CPU, where a decode step costs a fixed part (reading
every weight) plus a part per sequence, that is a third or more of an evaluation's or a GRPO
step's generation time when lengths vary (docs/reliability-and-speed.md).

`sample` runs the same autoregressive loop and drops a sequence, with its KV-cache rows, from the
batch once it has ended. Its tokens are `generate`'s for the same settings and random state:
`torch.multinomial(p, 1)` on a CPU draws q ~ Exp(1) for every row and vocabulary entry of the
batch it is given and takes argmax(p / q) per row; the loop draws q for the *whole* original
batch at every step, as `generate` does, and uses the rows still running. The logits processors
are transformers' own (`_get_logits_processor` on the settings `generate` would resolve); only
the row-wise ones are accepted (temperature, top-k, top-p, min-p). Anything else (stop strings,
a repetition penalty, beams, a streamer, a non-dynamic cache) goes to `model.generate` unchanged.
Equality with `generate` is a test (tests/test_decode.py), on the micro model and by hand on Qwen.
"""

from __future__ import annotations

import contextlib
import inspect

import torch
from transformers import DynamicCache, GenerationConfig
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

COMPACT = True  # False: every call goes to `generate` itself (the bench's same-run baseline: `full_batch`)
ROW_WISE = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper)


def plan(model, generation_config: GenerationConfig | None, kwargs: dict, prompt_length: int):
    """(resolved settings, logits processors) when `sample` gives `generate`'s tokens for this
    call, else None. Resolves the settings as `generate` does (the model's own generation config
    fills what the caller left unset) and asks transformers which processors it would apply."""
    extra = set(kwargs) - {"max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                           "pad_token_id", "eos_token_id", "bos_token_id"}
    if extra:  # stop strings, a streamer, a cache, a logits processor of the caller's own...
        return None
    try:
        config, model_kwargs = model._prepare_generation_config(generation_config, **kwargs)
        processors = model._get_logits_processor(generation_config=config, input_ids_seq_length=prompt_length,
                                                 logits_processor=LogitsProcessorList(), device="cpu",
                                                 model_kwargs=model_kwargs)
    except (AttributeError, TypeError):  # a transformers whose private helpers differ: generate itself
        return None
    plain = (config.num_beams in (None, 1) and config.num_return_sequences in (None, 1) and not config.stop_strings
             and config.max_new_tokens and not config.min_new_tokens and not config.min_length
             and config.cache_implementation in (None, "dynamic") and not config.return_dict_in_generate
             and (config.pad_token_id is not None or config.eos_token_id is not None))
    if not plain or model_kwargs or not all(isinstance(p, ROW_WISE) for p in processors):
        return None
    return config, processors


def _cache_argument(model) -> str:
    """The name the model's forward takes its KV cache under (`cache`, earlier `past_key_values`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@torch.no_grad()
def sample(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, config: GenerationConfig,
           processors: LogitsProcessorList) -> torch.Tensor:
    """`generate`'s output for a plan (prompt ids then generated ids, (B, L + T), pad after EOS),
    computing only the sequences still running at each step."""
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    eos = torch.tensor([e for e in eos if e is not None], dtype=torch.long)
    pad = config.pad_token_id if config.pad_token_id is not None else int(eos[0])
    batch, steps = input_ids.shape[0], config.max_new_tokens
    out = torch.full((batch, steps), pad, dtype=torch.long)
    running = torch.arange(batch)  # rows of the original batch still in the loop
    cache = DynamicCache(config=model.config)
    mask = attention_mask
    tokens = input_ids  # (running, L + t): what the processors see
    step_inputs = {"input_ids": input_ids}
    name = _cache_argument(model)
    used = 0
    for t in range(steps):
        logits = model(**step_inputs, attention_mask=mask, **{name: cache}, use_cache=True, logits_to_keep=1).logits
        scores = processors(tokens, logits[:, -1].to(copy=True, dtype=torch.float32))
        if config.do_sample:
            probs = torch.nn.functional.softmax(scores, dim=-1)
            # torch.multinomial(probs_of_the_whole_batch, 1) on a CPU: q ~ Exp(1) per row and entry, argmax(p / q)
            q = torch.empty((batch, probs.shape[-1]), dtype=probs.dtype).exponential_(1)
            nxt = torch.argmax(probs / q[running], dim=-1)
        else:
            nxt = torch.argmax(scores, dim=-1)
        out[running, t] = nxt
        used = t + 1
        keep = ~torch.isin(nxt, eos)
        if not keep.any():
            break
        if not keep.all():
            idx = keep.nonzero().squeeze(1)
            cache.batch_select_indices(idx)
            running, mask, tokens, nxt = running[idx], mask[idx], tokens[idx], nxt[idx]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        tokens = torch.cat([tokens, nxt[:, None]], dim=-1)
        step_inputs = {"input_ids": nxt[:, None]}
    return torch.cat([input_ids, out[:, :used]], dim=-1)


def generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
             generation_config: GenerationConfig | None = None, fallback=None, **kwargs) -> torch.Tensor:
    """`model.generate(input_ids, attention_mask, generation_config, **kwargs)`, by `sample` where
    its plan holds (on a CPU), else by `fallback` (default `model.generate`) itself."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    found = plan(model, generation_config, kwargs, input_ids.shape[1]) if COMPACT and input_ids.device.type == "cpu" else None
    if found is None:
        return (fallback or model.generate)(input_ids=input_ids, attention_mask=attention_mask,
                                            generation_config=generation_config, **kwargs)
    return sample(model, input_ids, attention_mask, *found)


@contextlib.contextmanager
def full_batch(on: bool = True):
    """Inside (when `on`), every call goes to `generate` itself: each sequence computed to its
    call's end, the same tokens; `rlsft bench --full-batch` times it against the loop."""
    global COMPACT
    saved, COMPACT = COMPACT, not on and COMPACT
    try:
        yield
    finally:
        COMPACT = saved


@contextlib.contextmanager
def compacting(model):
    """Inside, `model.generate(...)` (as TRL's GRPOTrainer calls it) goes through `generate` above;
    on exit `model.generate` is what it was (the class's method, or an instance's own binding such
    as the GRPO recipe's stop-string tokenizer)."""
    original, own = model.generate, vars(model).get("generate")

    def routed(input_ids=None, attention_mask=None, generation_config=None, **kwargs):
        return generate(model, input_ids, attention_mask, generation_config, fallback=original, **kwargs)

    model.generate = routed
    try:
        yield
    finally:
        if own is None:
            del model.generate
        else:
            model.generate = own
