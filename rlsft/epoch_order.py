"""Each epoch's order picked by the seed and the epoch, so that a resumed run shuffles as an
uninterrupted one.

TRL's `RepeatSampler` (GRPO's and on-policy distillation's sampler) draws each epoch's order from
one generator that lives as long as the sampler: epoch e's order is the generator's (e + 1)-th
permutation. A resumed run builds a new sampler, whose first epoch after the resume took the first
permutation again, so past the first epoch a killed and resumed run trained on other prompts than
the run that was never killed (accelerate's seedable sampler, which SFT uses, already reseeds per
epoch). Here the epoch the trainer sets (`set_epoch`) picks the permutation: the generator is
seeded afresh and advanced e draws, the same orders an uninterrupted run has always drawn, so no
uninterrupted run changes.
"""

from __future__ import annotations

import torch
from trl import DistillationTrainer as TRLDistillationTrainer


class EpochSampler(torch.utils.data.Sampler):
    """TRL's `RepeatSampler` (`sampler`) whose epoch e yields the (e + 1)-th permutation of a
    generator seeded with `sampler.seed`, however many epochs this object has iterated. Without a
    `set_epoch` call, or without shuffling or a seed, it is TRL's sampler.

    >>> from trl.trainer.utils import RepeatSampler
    >>> whole = RepeatSampler(range(6), mini_repeat_count=1, batch_size=2, seed=0)
    >>> orders = [list(whole), list(whole)]  # epochs 0 and 1 of one uninterrupted sampler
    >>> resumed = EpochSampler(RepeatSampler(range(6), mini_repeat_count=1, batch_size=2, seed=0))
    >>> resumed.set_epoch(1)  # a new sampler, as after a resume, asked for epoch 1
    >>> list(resumed) == orders[1] != orders[0]
    True
    """

    def __init__(self, sampler):
        self.sampler, self.epoch = sampler, None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        s = self.sampler
        if self.epoch is not None and s.shuffle and s.seed is not None:
            s.generator = torch.Generator().manual_seed(s.seed)
            for _ in range(self.epoch):  # the orders of the epochs before this one, drawn and dropped
                torch.randperm(s.num_samples, generator=s.generator)
        return iter(s)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochOrder:
    """Mixin for a TRL trainer that samples with `RepeatSampler`: its sampler wrapped in
    `EpochSampler`. `class T(EpochOrder, trl.GRPOTrainer)`."""

    def _get_train_sampler(self, dataset=None):
        return EpochSampler(super()._get_train_sampler(dataset))


class DistillationTrainer(EpochOrder, TRLDistillationTrainer):
    """`trl.DistillationTrainer` (the on-policy distillation recipe's) with each epoch's prompt
    order picked by the seed and the epoch."""
