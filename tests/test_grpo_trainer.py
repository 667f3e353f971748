"""The lab's GRPOTrainer (rlsft/grpo_trainer.py) learns exactly as TRL's: the same per-step loss,
rewards and grad norm on a short run, and LoRA merged for generation changes nothing it returns."""

import pytest
import torch

from rlsft import grpo_trainer
from rlsft.scoring import decode


def short_run(model_path: str, tmp_path, trainer_class, lora_r: int = 0, group_by_length: bool = False, max_len: int = 24) -> list[dict]:
    """5 GRPO steps of 2 prompts x 4 completions (micro-batches of 4, one generate call a step) on
    the toy model; the logged (loss, reward, grad norm) of each step."""
    import trl

    import recipes.grpo
    from rlsft.config import DataConfig, ModelConfig, RunConfig
    from rlsft.models import load_model, load_tokenizer
    from rlsft.scoring.rewards import get_reward
    from rlsft.trainer import lora_config, prompt_dataset

    torch.manual_seed(0)
    cfg = recipes.grpo.Config(
        run=RunConfig(name="same", out_dir=str(tmp_path / trainer_class.__module__), report_to="none", seed=0),
        model=ModelConfig(name=model_path, lora_r=lora_r), data=DataConfig(task="micro-arith", n_train=16, template="r1-zero"),
        training=dict(learning_rate=1e-3, max_steps=5, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                      logging_steps=1, save_strategy="no"),
        grpo=dict(num_generations=4, max_completion_length=max_len, loss_type="dapo", beta=0.0, temperature=0.8))
    args = recipes.grpo.training_args(cfg)
    args.reward_weights = [1.0, 1.0]
    rewards = [get_reward("accuracy", extraction="lenient", partial_credit=0.3), get_reward("format")]
    trainer = trainer_class(model=load_model(model_path), args=args, train_dataset=prompt_dataset(cfg.data, 0),
                            reward_funcs=rewards, processing_class=load_tokenizer(model_path), peft_config=lora_config(cfg.model))
    assert isinstance(trainer, trl.GRPOTrainer)
    trainer.group_by_length = group_by_length
    trainer.train()
    return [{k: h[k] for k in ("loss", "reward", "grad_norm", "entropy")} for h in trainer.state.log_history if "loss" in h]


@pytest.mark.parametrize("lora_r", [0, 4])
def test_five_steps_match_trl_step_for_step(toy_model, tmp_path, monkeypatch, lora_r):
    import trl

    calls, loops = [], []
    head, sample = grpo_trainer.completion_logprobs, decode.sample
    monkeypatch.setattr(grpo_trainer, "completion_logprobs", lambda *a, **k: calls.append(1) or head(*a, **k))
    monkeypatch.setattr(decode, "sample", lambda *a: loops.append(1) or sample(*a))
    lab = short_run(toy_model, tmp_path, grpo_trainer.GRPOTrainer, lora_r)
    assert calls, "the lab's head never ran: the comparison would be TRL against itself"
    assert len(loops) == 5, "the rollouts did not go through rlsft.scoring.decode (finished completions leaving the batch)"
    theirs = short_run(toy_model, tmp_path, trl.GRPOTrainer, lora_r)
    assert len(lab) == len(theirs) == 5
    assert len({round(s["reward"], 6) for s in theirs}) > 1 and any(s["grad_norm"] > 0 for s in theirs)  # it learns something
    for mine, other in zip(lab, theirs):
        assert mine["reward"] == other["reward"]  # the same samples: generation and its random stream are unchanged
        for key in ("loss", "grad_norm", "entropy"):
            assert mine[key] == pytest.approx(other[key], rel=1e-4, abs=1e-6), key


def test_micro_batches_by_length_train_the_same_steps_on_less_padding(tmp_path, monkeypatch):
    """group_by_length: each generate call's 8 completions go into 2 micro-batches of similar length,
    each trimmed of padding, and the 5 steps still match TRL's (same rewards, loss and grad norm to
    float tolerance: the same gradient summed in another order). The logged entropy is not compared:
    TRL averages it per micro-batch, and the micro-batches now hold other completions."""
    import trl

    widths, regroup = [], grpo_trainer.by_length

    def spy(chunks):
        grouped = regroup(chunks)
        widths.append(([c["completion_ids"].size(1) for c in chunks], [g["completion_ids"].size(1) for g in grouped]))
        return grouped

    monkeypatch.setattr(grpo_trainer, "by_length", spy)
    # micro-student: its completions end (EOS) at different lengths, where the toy model's run to the limit
    lab = short_run("micro-student", tmp_path, grpo_trainer.GRPOTrainer, group_by_length=True, max_len=96)
    theirs = short_run("micro-student", tmp_path, trl.GRPOTrainer, max_len=96)
    assert len(widths) == 5 and any(min(after) < min(before) for before, after in widths)  # padding really went
    for mine, other in zip(lab, theirs, strict=True):
        assert mine["reward"] == other["reward"]
        for key in ("loss", "grad_norm"):
            assert mine[key] == pytest.approx(other[key], rel=1e-4, abs=1e-6), key


def test_group_by_length_refuses_a_loss_normalised_per_micro_batch(tmp_path):
    import recipes.grpo
    from rlsft.config import RunConfig
    from rlsft.io import UserError

    cfg = recipes.grpo.Config(run=RunConfig(name="x", out_dir=str(tmp_path / "x"), report_to="none"), group_by_length=True,
                              grpo=dict(loss_type="bnpo"))
    with pytest.raises(UserError, match="group_by_length needs grpo.loss_type one of dapo, dr_grpo, grpo"):
        recipes.grpo.training_args(cfg)


def test_log_probs_and_gradients_match_autograd_through_log_softmax():
    torch.manual_seed(0)
    hidden = torch.randn(7, 5, requires_grad=True)
    weight = torch.randn(11, 5, requires_grad=True)
    bias = torch.randn(11, requires_grad=True)
    targets = torch.randint(0, 11, (7,))
    weights = torch.randn(7)  # an arbitrary upstream gradient
    logp, entropy = grpo_trainer.completion_logprobs(hidden, weight, bias, targets, temperature=0.7)
    (logp * weights).sum().backward()
    mine = [t.grad.clone() for t in (hidden, weight, bias)]
    for t in (hidden, weight, bias):
        t.grad = None
    reference = torch.log_softmax((hidden @ weight.T + bias) / 0.7, -1)
    assert torch.allclose(logp, reference.gather(-1, targets[:, None]).squeeze(-1), atol=1e-6)
    assert torch.allclose(entropy, -(reference.exp() * reference).sum(-1), atol=1e-5)
    (reference.gather(-1, targets[:, None]).squeeze(-1) * weights).sum().backward()
    for got, want in zip(mine, (hidden.grad, weight.grad, bias.grad)):
        assert torch.allclose(got, want, atol=1e-5)


def test_lora_merged_for_generation_gives_the_same_logits_and_restores_weights_bit_for_bit(toy_model):
    from peft import LoraConfig, get_peft_model

    from rlsft.models import load_model

    torch.manual_seed(0)
    model = get_peft_model(load_model(toy_model), LoraConfig(r=4, lora_alpha=32, target_modules="all-linear", init_lora_weights=False))
    ids = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        live = model(input_ids=ids).logits
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
        before = {n: p.clone() for n, p in model.named_parameters()}
        with grpo_trainer.merged_lora(model):
            merged = model(input_ids=ids).logits
            changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
        after = model(input_ids=ids).logits
    assert changed and all("base_layer" in n for n in changed)  # inside, the base weights carry the adapters
    assert not torch.allclose(live, plain, atol=1e-3)  # the adapters change the output...
    assert torch.allclose(merged, live, atol=1e-5)  # ...and merged they change it the same way
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # restored exactly, not by subtraction
    assert torch.equal(after, live)


def test_a_monitor_does_not_turn_an_unscored_completion_into_a_wrong_one(monkeypatch):
    """TRL leaves a completion out of the advantages only when every reward returned None; the
    zero-weight language monitor always returns a value, so without the lab's blanking a check
    that timed out (None) would be summed to a reward of 0, as a wrong answer."""
    import torch
    from trl import GRPOTrainer as TRLGRPOTrainer

    from rlsft.grpo_trainer import GRPOTrainer

    nan = float("nan")
    table = torch.tensor([[1.0, 0.0], [nan, 1.0], [0.0, 0.0]])  # accuracy, monitor; the second check timed out
    monkeypatch.setattr(TRLGRPOTrainer, "_calculate_rewards", lambda self, *a: table.clone())

    def accuracy(completions, **kw):
        return [None] * len(completions)

    def monitor(completions, **kw):
        return [0.0] * len(completions)

    monitor.is_monitor = True
    from collections import defaultdict
    from types import SimpleNamespace

    trainer = GRPOTrainer.__new__(GRPOTrainer)  # no model: only the reward table is under test
    trainer.model, trainer.state = SimpleNamespace(training=True), SimpleNamespace(global_step=0)
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer.reward_funcs = [accuracy, monitor]
    out = trainer._calculate_rewards(None, [], [], [])
    assert torch.isnan(out).all(dim=1).tolist() == [False, True, False]  # row 2: left out, as TRL does a row of Nones
    assert trainer._metrics["train"]["rewards/unscored_ratio"] == [pytest.approx(1 / 3)]  # logged each step
    assert out[0].tolist() == [1.0, 0.0] and out[2].tolist() == [0.0, 0.0]
    trainer.reward_funcs = [accuracy, accuracy]  # no monitor: TRL's table as it is
    assert torch.equal(torch.isnan(trainer._calculate_rewards(None, [], [], [])), torch.isnan(table))
    # the accuracy reward decides: a timed-out check leaves the completion out even where the format reward paid
    from rlsft.scoring.rewards import get_reward

    fmt = torch.tensor([[1.0, 1.0], [nan, 1.0], [0.0, 0.25]])  # accuracy, tag_count
    monkeypatch.setattr(TRLGRPOTrainer, "_calculate_rewards", lambda self, *a: fmt.clone())
    trainer.reward_funcs = [get_reward("accuracy", extraction="lenient"), get_reward("tag_count")]
    out = trainer._calculate_rewards(None, [], [], [])
    assert torch.isnan(out).all(dim=1).tolist() == [False, True, False] and out[2].tolist() == [0.0, 0.25]
    # every check failed: a step GRPO learns nothing from says so
    monkeypatch.setattr(TRLGRPOTrainer, "_calculate_rewards", lambda self, *a: torch.tensor([[nan, 1.0], [nan, 0.0]]))
    with pytest.warns(UserWarning, match="no completion of this generation could be scored"):
        trainer._calculate_rewards(None, [], [], [])
    assert trainer._metrics["train"]["rewards/unscored_ratio"][-1] == 1.0


def test_a_completion_stopped_at_answer_ends_with_eos_and_trains_no_padding(tmp_path):
    """Under `data.think_prefill` generation stops at `</answer>`: every such completion closes with
    EOS (not read as truncated) and no pad token the generator filled in is inside the loss mask
    (micro-student's pad is no end token)."""
    import recipes.grpo
    from rlsft.config import DataConfig, ModelConfig, RunConfig
    from rlsft.models import load_model, load_tokenizer
    from rlsft.scoring.rewards import get_reward
    from rlsft.trainer import prompt_dataset

    torch.manual_seed(0)
    tok = load_tokenizer("micro-student")
    cfg = recipes.grpo.Config(
        run=RunConfig(name="stop", out_dir=str(tmp_path), report_to="none", seed=0), model=ModelConfig(name="micro-student"),
        data=DataConfig(task="micro-arith", n_train=16, template="r1-zero", think_prefill=True),
        training=dict(learning_rate=1e-3, max_steps=1, per_device_train_batch_size=8, gradient_accumulation_steps=1,
                      logging_steps=1, save_strategy="no"),
        grpo=dict(mask_truncated_completions=True, num_generations=8, max_completion_length=96, loss_type="dapo", beta=0.0))
    args = recipes.grpo.training_args(cfg)
    args.reward_weights = [1.0]
    data = prompt_dataset(cfg.data, 0, tok)
    trainer = grpo_trainer.GRPOTrainer(model=load_model("micro-student"), args=args, train_dataset=data,
                                       reward_funcs=[get_reward("accuracy", extraction="lenient")], processing_class=tok)
    recipes.grpo.stop_at_answer(trainer.model, tok)
    assert tok.pad_token_id not in trainer.eos_token_ids
    trainer.model.train()
    out = trainer._generate_and_score_completions([data[0]] * 8)
    rows = [ids[m.bool()].tolist() for ids, m in zip(out["completion_ids"], out["completion_mask"])]
    stopped = [r for r in rows if "</answer>" in tok.decode(r)]
    assert len(stopped) >= 6  # micro-student answers in tags: the stop string ends most completions
    assert all(r[-1] == tok.eos_token_id and tok.decode(r[:-1]).endswith("</answer>") for r in stopped)
    assert all(tok.pad_token_id not in r for r in rows)
    assert trainer._metrics["train"]["completions/clipped_ratio"][-1] == 0.0


def test_lora_stays_unmerged_on_bf16_weights_where_the_merge_would_round_the_update_away(toy_model):
    from peft import LoraConfig, get_peft_model

    from rlsft.models import load_model

    model = get_peft_model(load_model(toy_model).to(torch.bfloat16), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    before = {n: p.clone() for n, p in model.named_parameters()}
    with grpo_trainer.merged_lora(model):
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # not merged
    with grpo_trainer.merged_lora(model.float()):
        assert any(not torch.equal(p, before[n].float()) for n, p in model.named_parameters())  # fp32: merged


def test_a_lora_output_head_is_scored_by_trls_head(toy_model, tmp_path):
    """The lab's completion-only head reads `head.weight`; a LoRA head's weight is its base's, so
    such a model goes to TRL's scoring, which runs the adapter."""
    from types import SimpleNamespace

    from peft import LoraConfig, get_peft_model

    from rlsft.models import load_model

    plain = load_model(toy_model)
    wrapped = get_peft_model(load_model(toy_model), LoraConfig(r=4, target_modules=["lm_head"], init_lora_weights=False))
    fake = SimpleNamespace(completion_head=True, _entropy_bonus_enabled=False,
                           accelerator=SimpleNamespace(num_processes=1, device=torch.device("cpu")))
    applies = grpo_trainer.GRPOTrainer._lab_head_applies
    assert applies(fake, plain, {}, False)
    assert not applies(fake, wrapped, {}, False)
