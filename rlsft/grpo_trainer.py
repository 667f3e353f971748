"""TRL's GRPOTrainer with the costs a CPU step does not need taken out, and an exact resume.

`GRPOTrainer` here is `trl.GRPOTrainer` with some of its methods changed and its sampler wrapped;
everything else (sampling, advantages, the loss, logging) is TRL's own, and its reward table only
has the zero-weight monitor's column blanked where no reward could score a completion
(`_calculate_rewards`).

1. **Log-probabilities of completion tokens only.** TRL's fused LM head scores only the labelled
   positions on a GPU, but on a CPU (no Triton) it scores every position of the batch, prompt and
   padding included, and its backward recomputes each logits tile. For Qwen2.5-Coder-0.5B (151,936-
   token vocabulary) that head was about half of a forward and backward (the profile in
   reports/bench/ measures it). Here the backbone
   runs as before and the head runs once, on the real completion tokens alone
   (`completion_logprobs`): one (tokens, vocab) matrix, kept for the backward, which needs no
   recompute. Same mathematics: log-softmax of logits / temperature at each sampled token; the
   tests check the per-step loss, rewards and grad norm against TRL's path.
2. **LoRA merged for generation** (`model.lora_r` > 0): before each generate call the adapters are
   folded into the base weights and the adapter layers are bypassed, so decoding runs plain
   matmuls; afterwards the frozen base weights are restored bit for bit from a copy (not by
   subtraction, which would round). The trained adapters are untouched. With LoRA dropout live
   (`model.lora_dropout` > 0 in training mode) TRL samples through the dropout, which a merged
   model cannot reproduce, and with base weights in bf16 or fp16 the merge rounds a small update
   away; in both cases the adapters stay unmerged.
3. **Finished completions leave the batch.** `generate` computes every completion of a call
   until the longest ends; `rlsft.scoring.decode` stops computing a completion once it has ended,
   with `generate`'s tokens for the same seed (its random draws made for the whole batch).

4. **Micro-batches by length** (opt-in: the GRPO recipe's `group_by_length`): TRL pads every
   micro-batch of a generate call to the call's longest prompt and completion. Here the call's
   completions are regrouped shortest first and each micro-batch trimmed to its own longest, so
   the backbone trains on less padding. The gradient is the same sum (loss types whose normaliser
   spans the call or counts sequences: dapo, dr_grpo, grpo) in another floating-point order, and
   TRL's per-micro-batch averages that it logs (entropy, clip ratios) are taken over other groups.

5. **A resumed run shuffles as an uninterrupted one** (`rlsft.epoch_order`): each epoch's prompt
   order is picked by the seed and the epoch, so a run killed past its first epoch and resumed
   trains on the prompts the uninterrupted run would have.

6. **A resume between two steps of one generation reuses it.** With `num_iterations` > 1 (or
   `steps_per_generation` above the gradient accumulation) each generate call trains several
   optimizer steps. TRL keeps the call's completions only in memory and, resumed, counts its steps
   from zero and generates at once, so every later generation lands a step off. A checkpoint
   taken mid-reuse keeps the completions still to train on and the step count
   (`grpo_reuse-<process>.pt`, a few hundred KB), and a resume takes them back (on every
   process, or on none when the number of processes changed).
7. **Completion tokens are counted** (`completion_tokens_seen`, kept with each checkpoint) beside
   TRL's prompt-and-completion count, so the compute record prices the output head only where GRPO
   computes logits (rlsft.runs.compute).
8. **A completion stopped at a stop string ends with EOS** (`ended_at_stop`; the recipe stops at
   `</answer>` under `data.think_prefill`): TRL would read it as truncated, and train the pad
   tokens transformers fills after it where the pad is no end token.

The first four fall back to TRL's own code wherever they would not be exact or do not apply: several
processes (DDP), a GPU (TRL's Triton head already scores only completions; the merge, exact in
fp32, still runs on one GPU process), vision inputs, MoE auxiliary losses, an entropy bonus (needs
the entropy's gradient), logit scaling or soft-capping, a LoRA output head.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import torch
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import GRPOTrainer as TRLGRPOTrainer

from rlsft.epoch_order import EpochOrder
from rlsft.scoring import decode, pool
from rlsft.scoring.evaluate import first_stop

# a generate call's keys that `by_length` regroups; any other key (images, tools) keeps TRL's micro-batches
GROUPABLE = {"prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "num_items_in_batch",
             "old_per_token_logps", "ref_per_token_logps", "sampling_per_token_logps", "importance_sampling_ratio"}
PER_COMPLETION_TOKEN = ("completion_ids", "completion_mask", "old_per_token_logps", "ref_per_token_logps",
                        "sampling_per_token_logps", "importance_sampling_ratio")  # (B, C) tensors, trimmed with the completions
LENGTH_GROUPED_LOSSES = ("dapo", "dr_grpo", "grpo")  # their gradient does not depend on which completions share a micro-batch

# config fields that change the LM head's logits; a model with any of them set keeps TRL's head
_SCALED_HEAD = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


class _CompletionLogProbs(torch.autograd.Function):
    """log p(target) and entropy (no gradient) of softmax(hidden @ weight.T / T), one row per token.

    Memory: one float32 (tokens, vocab) matrix, the probabilities, saved for the backward, which
    turns it in place into the logits' gradient: d log p_t / d z_j = (1[j = t] - p_j) / T."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, inv_t: float, with_entropy: bool = True):
        z = torch.nn.functional.linear(hidden, weight, bias).float()  # (N, V) logits
        z.mul_(inv_t)
        z.sub_(z.amax(-1, keepdim=True))  # shifted: the softmax is unchanged, exp cannot overflow
        target = z.gather(-1, targets[:, None]).squeeze(-1)
        p = z.exp_()
        total = p.sum(-1)
        logp = target - total.log()
        p.div_(total[:, None])  # probabilities, in place
        # -sum p log p in nats, in row chunks (one (512, vocab) temporary); zeros where the caller needs none
        entropy = torch.cat([torch.special.entr(rows).sum(-1) for rows in p.split(512)]) if with_entropy else p.new_zeros(len(p))
        ctx.save_for_backward(hidden, weight, bias, targets, p)
        ctx.inv_t = inv_t
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, bias, targets, p = ctx.saved_tensors
        g = p.mul_(-grad_logp[:, None])  # the saved probabilities become the logits' gradient
        g[torch.arange(len(targets)), targets] += grad_logp
        g.mul_(ctx.inv_t)
        g = g.to(weight.dtype)
        grad_hidden = g @ weight if ctx.needs_input_grad[0] else None
        grad_weight = g.t() @ hidden if ctx.needs_input_grad[1] else None  # skipped when the head is frozen (LoRA)
        grad_bias = g.sum(0) if bias is not None and ctx.needs_input_grad[2] else None
        return grad_hidden, grad_weight, grad_bias, None, None, None


def completion_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                        temperature: float = 1.0, with_entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probability of `targets` (N,) and entropy (N,) under softmax(hidden @ weight.T
    / temperature), for hidden (N, H) and weight (V, H); differentiable in the log-probability.

    >>> h, w = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> logp, entropy = completion_logprobs(h, w, None, torch.tensor([0]))
    >>> round(logp.item(), 4), round(entropy.item(), 4)  # log(e^2 / (e^2 + 1)); entropy of (0.881, 0.119)
    (-0.1269, 0.3653)
    """
    return _CompletionLogProbs.apply(hidden, weight, bias, targets, 1.0 / temperature, with_entropy)


def by_length(chunks: list[dict]) -> list[dict] | None:
    """One generate call's micro-batches regrouped by completion length (shortest first, ties in
    their shuffled order) into micro-batches of the same size, each trimmed to its own longest
    prompt (left padding) and completion (right padding). None where a key is not one it knows.

    >>> mask = lambda rows: torch.tensor(rows)
    >>> chunks = [{"prompt_ids": mask([[0, 5], [6, 7]]), "prompt_mask": mask([[0, 1], [1, 1]]),
    ...            "completion_ids": mask([[1, 2, 3], [4, 0, 0]]), "completion_mask": mask([[1, 1, 1], [1, 0, 0]]),
    ...            "advantages": torch.tensor([0.5, -0.5]), "num_items_in_batch": torch.tensor(6)},
    ...           {"prompt_ids": mask([[0, 8], [0, 9]]), "prompt_mask": mask([[0, 1], [0, 1]]),
    ...            "completion_ids": mask([[1, 0, 0], [2, 3, 0]]), "completion_mask": mask([[1, 0, 0], [1, 1, 0]]),
    ...            "advantages": torch.tensor([1.0, -1.0]), "num_items_in_batch": torch.tensor(6)}]
    >>> short, long = by_length(chunks)
    >>> short["completion_ids"].tolist(), short["prompt_ids"].tolist(), short["advantages"].tolist()
    ([[4], [1]], [[6, 7], [0, 8]], [-0.5, 1.0])
    >>> long["completion_ids"].tolist(), long["prompt_ids"].tolist(), int(long["num_items_in_batch"])
    ([[2, 3, 0], [1, 2, 3]], [[9], [5]], 6)
    """
    if set(chunks[0]) - GROUPABLE:
        return None
    size = chunks[0]["completion_ids"].size(0)
    whole = {k: torch.cat([c[k] for c in chunks]) if isinstance(v, torch.Tensor) and v.ndim else v for k, v in chunks[0].items()}
    order = torch.argsort(whole["completion_mask"].sum(1), stable=True)
    groups = []
    for rows in order.split(size):
        g = {k: v[rows] if isinstance(v, torch.Tensor) and v.ndim else v for k, v in whole.items()}
        first = int(g["prompt_mask"].any(0).int().argmax())  # first prompt column holding a real token
        last = int(g["completion_mask"].any(0).nonzero().max()) + 1 if g["completion_mask"].any() else 1
        g["prompt_ids"], g["prompt_mask"] = g["prompt_ids"][:, first:], g["prompt_mask"][:, first:]
        for k in PER_COMPLETION_TOKEN:
            if g.get(k) is not None and g[k].ndim == 2:
                g[k] = g[k][:, :last]
        groups.append(g)
    return groups


def _unwrapped(model):
    """The transformers model under a peft wrapper (LoRA layers stay injected in it)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class GRPOTrainer(EpochOrder, TRLGRPOTrainer):
    """`trl.GRPOTrainer` with completion-only log-probabilities on a CPU, LoRA merged and finished
    completions dropped in generation, and each epoch's prompt order fixed by its seed and epoch
    (module docstring). `completion_head = False` turns the first off (TRL's head)."""

    completion_head = True
    group_by_length = False  # the GRPO recipe's `group_by_length` (module docstring, 4)

    def _prepare_inputs(self, generation_batch):
        buffered = self._buffered_inputs
        inputs = super()._prepare_inputs(generation_batch)
        fresh = self.model.training and self._buffered_inputs is not buffered  # a generate call just filled the buffer
        # an entropy bonus or a MoE auxiliary loss is averaged per micro-batch: regrouping would change the gradient
        exact = self.loss_type in LENGTH_GROUPED_LOSSES and self.top_entropy_quantile == 1.0 and not self._entropy_bonus_enabled \
            and not self.aux_loss_enabled
        if fresh and self.group_by_length and exact:
            grouped = by_length(self._buffered_inputs)
            if grouped is not None:
                self._buffered_inputs = grouped
                inputs = grouped[self._step % self.args.steps_per_generation]
        return inputs

    REUSE_FILE = "grpo_reuse-{}.pt"  # a checkpoint's completions still to reuse, one file per process (6)
    # Completion tokens generated for training so far, over all processes and sittings (TRL's
    # `state.num_input_tokens_seen` counts prompt + completion; `rlsft.trainer.train` keeps this count
    # with each checkpoint): the compute record prices the output head on these alone, the only
    # tokens whose logits GRPO computes. None: resumed from a checkpoint that predates the count, so
    # the record prices the head on every token.
    completion_tokens_seen: int | None = 0

    def _generate(self, prompts: list):
        out = super()._generate(prompts)
        if self.model.training and self.completion_tokens_seen is not None:
            completion_ids, tool_mask = out[1], out[2]
            local = sum(sum(m) for m in tool_mask) if tool_mask is not None else sum(len(ids) for ids in completion_ids)  # as TRL counts
            self.completion_tokens_seen += int(self.accelerator.gather(torch.tensor([local], device=self.accelerator.device)).sum())
        return out

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's (completions x reward functions) table, gathered, with the rows of completions that
        cannot be scored blanked whole, so TRL leaves them out (it does only for a row of Nones)
        rather than summing the rest: a row where a reward marked `decides_correctness` (the
        accuracy reward) returned None, whatever the format rewards paid, and a row where every
        reward but a zero-weight monitor (marked `is_monitor`: it measures) returned None."""
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

        def marked(name: str) -> torch.Tensor:  # (reward functions,): a partial carries its function's marks
            return torch.tensor([bool(getattr(f, name, False)) for f in self.reward_funcs], device=rewards.device)

        monitors, deciders = marked("is_monitor"), marked("decides_correctness")
        unscorable = torch.isnan(rewards[:, deciders]).any(dim=1)  # (completions,)
        if monitors.any() and not monitors.all():
            unscorable |= torch.isnan(rewards[:, ~monitors]).all(dim=1)
        rewards[unscorable] = torch.nan
        # the share left out of the advantages, logged each step: a broken or overloaded verifier would
        # otherwise turn GRPO into a no-op that only `reward: NaN` shows
        self._metrics["train" if self.model.training else "eval"]["rewards/unscored_ratio"].append(unscorable.float().mean().item())
        if self.model.training and unscorable.all():
            warnings.warn(f"step {self.state.global_step + 1}: no completion of this generation could be scored (the accuracy check "
                          f"timed out or failed: rlsft.scoring.pool counts {pool.TIMEOUTS['count']} timeouts and "
                          f"{pool.FAILURES['count']} failures so far); GRPO learns nothing from it")
        return rewards

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self._buffered_inputs is not None and self._step % (self.args.steps_per_generation * self.num_iterations):
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)  # with save_only_model, only the main process made it
            kept = folder / self.REUSE_FILE.format(self.accelerator.process_index)
            partial = kept.with_suffix(".partial")  # renamed once whole: a kill while saving leaves no half file
            torch.save({"step": self._step, "processes": self.accelerator.num_processes, "inputs": self._buffered_inputs}, partial)
            os.replace(partial, kept)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        if resume_from_checkpoint:  # here, not in _load_from_checkpoint, which DeepSpeed's resume skips
            checkpoint = get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True else resume_from_checkpoint
            self._restore_reuse(Path(checkpoint))
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _restore_reuse(self, checkpoint: Path) -> None:
        """Take back the completions a checkpoint kept for its next steps (6), on every process or on
        none: each process's file, saved by as many processes as run now (otherwise each would
        generate at its own step, and their collective calls would not meet)."""
        files = [checkpoint / self.REUSE_FILE.format(i) for i in range(self.accelerator.num_processes)]
        if not files[0].is_file():
            return
        state = torch.load(files[self.accelerator.process_index], map_location=self.accelerator.device, weights_only=True) \
            if all(f.is_file() for f in files) else {}
        if state.get("processes") != self.accelerator.num_processes:
            warnings.warn(f"{checkpoint}: its kept completions are incomplete or were saved by another number of processes; the resumed "
                          "run generates afresh at once (as TRL does), so its later generations come a step off")
            return
        self._step, self._buffered_inputs = state["step"], state["inputs"]

    def _lab_head_applies(self, model, extra: dict, compute_aux_loss: bool) -> bool:
        # one process first: under DDP `model` is the wrapper (no config), and its forward must run for the gradient sync
        if not (self.completion_head and self.accelerator.num_processes == 1 and self.accelerator.device.type == "cpu"):
            return False
        lm = _unwrapped(model)
        if hasattr(lm.get_output_embeddings(), "get_base_layer"):  # a LoRA head: `.weight` is its base's, without the adapter
            return False
        text = lm.config.get_text_config()
        return (not compute_aux_loss and not self._entropy_bonus_enabled and all(v is None for v in extra.values())
                and all(getattr(text, key, None) is None for key in _SCALED_HEAD))

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **extra):
        if not self._lab_head_applies(model, extra, compute_aux_loss):
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, batch_size,
                                                              compute_entropy, compute_aux_loss, **extra)
        lm = _unwrapped(model)
        head = lm.get_output_embeddings()
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            ids, mask = input_ids[start:start + batch_size], attention_mask[start:start + batch_size]
            with self.accelerator.autocast():
                hidden = lm.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            # position i predicts token i + 1: the last `logits_to_keep` tokens are predicted from the ones before
            hidden = hidden[:, -logits_to_keep - 1:-1]  # (B, C, H)
            targets, real = ids[:, -logits_to_keep:], mask[:, -logits_to_keep:].bool()  # (B, C)
            logp, entropy = completion_logprobs(hidden[real].to(head.weight.dtype), head.weight, head.bias, targets[real], self.temperature,
                                                compute_entropy)
            logps.append(torch.zeros(real.shape, dtype=logp.dtype, device=logp.device).masked_scatter(real, logp))
            entropies.append(torch.zeros(real.shape, dtype=entropy.dtype, device=entropy.device).masked_scatter(real, entropy))
        return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        transformers_path = not self.use_vllm and not self.use_transformers_continuous_batching
        with (merged_lora(self.model) if transformers_path and self.accelerator.num_processes == 1 else contextlib.nullcontext(),
              decode.compacting(self.model) if transformers_path else contextlib.nullcontext()):
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                                      has_tool_images)
        kwargs = self.args.generation_kwargs or {}
        stops = kwargs.get("stop_strings") or kwargs.get("stop") or []
        for stop in [stops] if isinstance(stops, str) else stops:
            completion_ids, logprobs = ended_at_stop(completion_ids, logprobs, self._tokenizer, stop, self.eos_token_ids[0],
                                                     self.eos_token_ids)
        return completion_ids, logprobs


def ended_at_stop(completion_ids: list[list[int]], logprobs: list[list[float]] | None, tokenizer, stop: str, eos: int,
                  ends: list[int]) -> tuple[list[list[int]], list[list[float]] | None]:
    """Completions that generation stopped at `stop` (the GRPO recipe's `</answer>` under
    `data.think_prefill`), cut after the token that completes it and closed with `eos`, as if the
    model had ended there. Unclosed, TRL reads such a completion as truncated (its clipped ratio,
    and TRL's option to mask truncated completions drops it from the loss), and transformers fills the rows that
    stopped before a call's last with the pad token, which TRL's mask keeps (and trains) wherever
    the pad is no end token. Where the sampler's log-probabilities come along (vLLM), the closing
    token gets NaN, which TRL's importance-sampling correction reads as a token it could not score
    (the sampler never drew it). A completion that already ends
    with one of `ends`, or never writes `stop`, is left as it is.

    >>> from rlsft.models import load_tokenizer
    >>> tok = load_tokenizer("micro-student")
    >>> ids = tok("<answer> 7 </answer>", add_special_tokens=False)["input_ids"]
    >>> pad, eos = tok.pad_token_id, tok.eos_token_id
    >>> out, _ = ended_at_stop([ids + [pad, pad], ids[:2], ids + [eos]], None, tok, "</answer>", eos, [eos])
    >>> out == [ids + [eos], ids[:2], ids + [eos]]
    True
    """
    ids_out, logps_out = [], [] if logprobs is not None else None
    for i, ids in enumerate(completion_ids):
        logps = logprobs[i] if logprobs is not None else None
        k = None if (ids and ids[-1] in ends) else first_stop(ids, tokenizer, stop)
        if k is not None:
            ids = [*ids[:k + 1], eos]
            logps = None if logps is None else [*logps[:k + 1], float("nan")]  # TRL reads NaN as unscored: ratio 1
        ids_out.append(list(ids))
        if logps_out is not None:
            logps_out.append(logps)
    return ids_out, logps_out


@contextlib.contextmanager
def merged_lora(model):
    """Inside: a peft LoRA model's adapters folded into its base weights and the adapter layers
    bypassed, so generation runs plain matmuls. On exit the base weights are restored bit for bit
    from a copy made on entry (subtracting the delta again would round). A model without LoRA
    layers passes through unchanged."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        yield
        return
    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and not m.merged]
    if any(m.get_base_layer().weight.dtype != torch.float32 for m in layers):
        # merging rounds W + BA to the weights' dtype: in bf16 an early, small update rounds away, and the
        # completions would come from another policy than the one trained (the adapters then stay unmerged)
        yield
        return
    dropout = [d for m in layers for d in m.lora_dropout.values() if isinstance(d, torch.nn.Dropout) and d.p > 0 and d.training]
    if not layers or dropout:  # live dropout samples from a perturbed policy, which a merged model cannot: left as it is
        yield
        return
    saved = [m.get_base_layer().weight.detach().clone() for m in layers]
    try:
        with torch.no_grad():
            for m in layers:
                m.merge()
        yield
    finally:
        with torch.no_grad():
            for m, weight in zip(layers, saved):
                m.get_base_layer().weight.copy_(weight)
                m.merged_adapters = []  # the adapters are live again: unmerged
