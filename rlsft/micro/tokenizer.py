"""A byte-level BPE tokenizer trained on the micro corpus with the `tokenizers` library.

Design, and why:
- Digits are split one by one before BPE (tiny models learn arithmetic digit by digit).
- Between digits, BPE may merge across spaces (ByteLevel without its word regex), so the long
  R1-Zero instruction that opens every prompt shrinks to a few tokens.
- `<think>`, `</think>`, `<answer>`, `</answer>` are added tokens: always one id each, never
  split, and kept by `decode(..., skip_special_tokens=True)` (they are not "special").
- Saved as a plain `PreTrainedTokenizerFast` (tokenizer_class in tokenizer_config.json);
  `rlsft.models.load_tokenizer` loads that class directly, so no model-type mapping in
  `AutoTokenizer` can swap in another pre-tokenizer.
"""

from __future__ import annotations

from typing import Iterable

EOS = "<|endoftext|>"
PAD = "<|pad|>"
TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """Train the BPE on `texts` and wrap it as a transformers fast tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in TAGS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, clean_up_tokenization_spaces=False)
