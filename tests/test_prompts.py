"""Training prompts: a seeded share written in Chinese for the multilingual-prompt arm."""

import pytest

from rlsft.config import DataConfig
from rlsft.io import UserError
from rlsft.trainer import prompt_dataset


def test_a_seeded_share_of_prompts_is_chinese():
    ds = prompt_dataset(DataConfig(task="micro-arith", n_train=400, template="r1-zero", zh_prompt_share=0.5), seed=1)
    langs = ds["prompt_language"]
    assert 150 < langs.count("zh") < 250  # about half
    assert all(("计算" in p or "现在有多少" in p) == (lang == "zh") for p, lang in zip(ds["prompt"], langs))
    again = prompt_dataset(DataConfig(task="micro-arith", n_train=400, template="r1-zero", zh_prompt_share=0.5), seed=1)
    assert again["prompt"] == ds["prompt"]  # the seed decides which
    english = prompt_dataset(DataConfig(task="micro-arith", n_train=400, template="r1-zero"), seed=1)
    assert set(english["prompt_language"]) == {"en"} and english["answer"] == ds["answer"]  # same problems, same golds


def test_bad_share_and_untranslatable_task_fail_on_one_line():
    with pytest.raises(UserError, match="zh_prompt_share must be in"):
        DataConfig(zh_prompt_share=1.5)
    with pytest.raises(UserError, match="cannot write its problems in Chinese"):
        prompt_dataset(DataConfig(task="gsm8k", zh_prompt_share=0.5), seed=0)
