"""Model and tokenizer loading for local folders, shipped micro models and hub ids.

`resolve_model` turns a name into something `from_pretrained` accepts: a shipped micro model name
(`micro-student`, `micro-teacher`) becomes its folder inside the package; a packaged real model
(`smollm2-135m`, see rlsft/packaged.py) its converted folder in the cache; an existing folder
stays as it is; anything else is taken as a hub id. Offline failures become one-line `UserError`s.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rlsft.io import UserError
from rlsft.packaged import QWEN_CODER_05B, QWEN_CODER_15B, cache_root, chunked_gguf_model, packaged_model_folder, smollm2_135m

MICRO_MODELS_DIR = Path(__file__).parent / "micro" / "models"  # shipped with the package


# Architectures the lab can build with random weights (transformers' Qwen2Config fields), for a GPU
# check where real weights cannot travel; a card names one.
ARCHITECTURES = {
    "qwen2.5-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0, tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0, tie_word_embeddings=True),
    "qwen2.5-3b": dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                       num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1_000_000.0, tie_word_embeddings=True),
}


@dataclass(frozen=True)
class ModelCard:
    """What the lab knows of a real model without its files: enough for a dry run offline."""

    parameters: int | None  # as `flop_parameters` counts them, the compute record's N (None: known once a packaged model is converted)
    vocab_size: int  # config.vocab_size: the logit rows that on-policy distillation matches
    max_new_tokens: int = 512  # `rlsft eval`'s default completion budget
    build: Callable[[Path], None] | None = None  # a packaged model: writes its folder (rlsft/packaged.py); None for a hub id
    architecture: str | None = None  # its key in ARCHITECTURES: the GPU check's random-weight stand-in


# The one table to extend when adding a real model: a hub id, or a name with a `build` for a model
# that comes as a Python package. A micro model's card is the rlsft_card.json in its folder.
MODEL_CARDS: dict[str, ModelCard] = {
    "Qwen/Qwen2.5-0.5B": ModelCard(494_032_768, 151_936, architecture="qwen2.5-0.5b"),
    "Qwen/Qwen2.5-0.5B-Instruct": ModelCard(494_032_768, 151_936, architecture="qwen2.5-0.5b"),
    "Qwen/Qwen2.5-1.5B": ModelCard(1_543_714_304, 151_936, architecture="qwen2.5-1.5b"),
    "Qwen/Qwen2.5-1.5B-Instruct": ModelCard(1_543_714_304, 151_936, architecture="qwen2.5-1.5b"),
    "Qwen/Qwen2.5-3B-Instruct": ModelCard(3_085_938_688, 151_936, architecture="qwen2.5-3b"),
    "Qwen/Qwen2.5-7B-Instruct": ModelCard(7_070_619_136, 152_064),  # 7,615,616,512 less its untied input embedding (152,064 x 3,584)
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": ModelCard(7_070_619_136, 152_064),
    "smollm2-135m": ModelCard(134_515_008, 49_152, build=smollm2_135m),  # before its first use converts it
    "qwen2.5-coder-0.5b": ModelCard(494_032_768, 151_936, build=chunked_gguf_model(QWEN_CODER_05B)),  # its GGUF keeps the output head apart: 630,167,424 stored
    "qwen2.5-coder-1.5b": ModelCard(None, 151_936, build=chunked_gguf_model(QWEN_CODER_15B)),  # its converted folder's config counts it
}


def is_packaged(name: str) -> bool:
    """A real model that comes as a Python package (a card with a `build`).

    >>> is_packaged("smollm2-135m"), is_packaged("Qwen/Qwen2.5-0.5B")
    (True, False)
    """
    card = MODEL_CARDS.get(name)
    return card is not None and card.build is not None


def numel(p) -> int:
    """A parameter's size, whole even where DeepSpeed ZeRO-3 has partitioned it (`ds_numel`).

    >>> import torch
    >>> w = torch.nn.Parameter(torch.empty(0)); w.ds_numel = 896 * 151936  # a ZeRO-3 shard's stand-in
    >>> numel(w), numel(torch.nn.Parameter(torch.empty(3, 4)))
    (136134656, 12)
    """
    return getattr(p, "ds_numel", None) or p.numel()


def n_params(model) -> int:
    """Parameters of a loaded model, tied weights once (`parameters()` yields a shared tensor once)."""
    return sum(numel(p) for p in model.parameters())


def matmul_params(model) -> tuple[int, int]:
    """(body, head): the parameters a token's forward pass multiplies by, outside and inside the
    output head. The input embedding is a lookup, not a matmul: an untied one is left out; a tied
    one counts once, as the head. Works on the meta device (ties are read by identity, not address).

    >>> import torch
    >>> from transformers import Qwen2Config, Qwen2ForCausalLM
    >>> kw = dict(vocab_size=100, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    >>> with torch.device("meta"):
    ...     tied, untied = (Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=t, **kw)) for t in (True, False))
    >>> matmul_params(tied), matmul_params(untied), n_params(untied) - n_params(tied)  # the untied input embedding: 100 x 8
    ((616, 800), (616, 800), 800)
    """
    head = model.get_output_embeddings()
    total = n_params(model)
    if head is None:  # no output head to tell apart: every parameter multiplies
        return total, 0
    embedding = model.get_input_embeddings()
    tied = embedding is None or embedding.weight is head.weight
    return total - numel(head.weight) - (0 if tied else numel(embedding.weight)), numel(head.weight)


def flop_parameters(model) -> int:
    """N of the compute record's 2N (forward) and 6N (training) FLOPs a token: every parameter a
    token multiplies by, so all of them less an untied input embedding (`matmul_params`)."""
    return sum(matmul_params(model))


def model_config(name_or_path: str, trust_remote_code: bool = False, download: bool = False):
    """A model's transformers config: a micro or local folder, a converted packaged model, the hub
    cache, or (with `download`) the hub; None where none is at hand. A packaged model is never
    converted here."""
    from transformers import AutoConfig

    if is_packaged(name_or_path):
        folder = cache_root() / name_or_path
        return AutoConfig.from_pretrained(folder) if (folder / "config.json").is_file() else None
    try:
        return AutoConfig.from_pretrained(resolve_model(name_or_path), trust_remote_code=trust_remote_code,
                                          local_files_only=not download)
    except Exception:  # not cached, offline, no such id, or a pipeline stage's model not trained yet
        return None


def vocab_size(name_or_path: str, trust_remote_code: bool = False, download: bool = False) -> int | None:
    """config.vocab_size from the model's config where one is at hand, else its card; None unknown.

    >>> vocab_size("Qwen/Qwen2.5-7B-Instruct"), vocab_size("Qwen/Qwen2.5-3B-Instruct")
    (152064, 151936)
    """
    config = model_config(name_or_path, trust_remote_code, download)
    if config is not None and getattr(config, "vocab_size", None):
        return int(config.vocab_size)
    card = MODEL_CARDS.get(name_or_path)
    return card.vocab_size if card else None


def micro_model_names(models_dir: Path = MICRO_MODELS_DIR) -> list[str]:
    """Names of the micro models shipped in the package (folders holding a config.json)."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if (p / "config.json").is_file())


def resolve_model(name_or_path: str, models_dir: Path = MICRO_MODELS_DIR) -> str:
    """A local folder for micro names and paths; a hub id is returned unchanged.

    >>> resolve_model("Qwen/Qwen2.5-0.5B")
    'Qwen/Qwen2.5-0.5B'
    """
    if (models_dir / name_or_path / "config.json").is_file():
        return str(models_dir / name_or_path)
    if is_packaged(name_or_path):  # a real model shipped as a Python package (smollm2-135m)
        return str(packaged_model_folder(name_or_path, MODEL_CARDS[name_or_path].build))
    check_model_name(name_or_path, models_dir)
    path = Path(name_or_path).expanduser()
    return str(path) if path.is_dir() else name_or_path


def check_model_name(name_or_path: str, models_dir: Path = MICRO_MODELS_DIR) -> None:
    """`resolve_model`'s refusals without its work (a packaged model is not built, a hub id not
    fetched), for dry runs: a micro name that is not built, a path that is no model folder.

    >>> check_model_name("Qwen/Qwen2.5-0.5B"), check_model_name("micro-student")
    (None, None)
    """
    if (models_dir / name_or_path / "config.json").is_file() or is_packaged(name_or_path):
        return
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {name_or_path!r} has no config.json")
        return
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or name_or_path.startswith("micro-"):
        known = ", ".join(micro_model_names(models_dir)) or "none built yet"
        raise UserError(f"model {name_or_path!r} not found: not a folder, and not a micro model ({known})")


def _load_error(what: str, name: str, e: Exception) -> UserError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    local = Path(name).expanduser().is_dir()  # a folder's own fault (a malformed config) is not the hub's
    first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    why = "the hub is offline (HF_HUB_OFFLINE=1) and it is not in the local cache" if offline and not local else first
    return UserError(f"cannot load {what} {name!r}: {why}")


def _is_plain_fast_tokenizer(folder: Path) -> bool:
    """True for a folder holding a bare `tokenizers` tokenizer (as the micro models do)."""

    cfg = folder / "tokenizer_config.json"
    if not cfg.is_file():
        return False
    return json.loads(cfg.read_text()).get("tokenizer_class") in ("PreTrainedTokenizerFast", "TokenizersBackend")


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None):
    """Tokenizer of a model, left-padded for batched generation. A folder written by the lab
    (micro models) is loaded as the exact `PreTrainedTokenizerFast` it was saved as, so no
    model-type mapping can swap its pre-tokenizer. `revision`: a hub branch, tag or commit."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    path = resolve_model(name_or_path)
    try:
        if _is_plain_fast_tokenizer(Path(path)):
            tok = PreTrainedTokenizerFast.from_pretrained(path)
        else:
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    except UserError:
        raise
    except Exception as e:  # OSError offline, ValueError bad files
        raise _load_error("tokenizer", name_or_path, e) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


ATTENTION = (None, "eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")  # transformers' attn_implementation


def compute_dtype(dtype: str) -> str:
    """The dtype a model whose weights are `dtype` computes in on this machine: float32 weights
    train under bf16 autocast on a bf16 GPU (`rlsft.trainer.trl_args`), so the lab evaluates them
    in bf16 there too, before training as after; otherwise `dtype` itself.

    >>> compute_dtype("bfloat16"), compute_dtype("auto")
    ('bfloat16', 'auto')
    """

    if dtype == "float32" and native_bf16():
        return "bfloat16"
    return dtype


def native_bf16() -> bool:
    """A CUDA GPU with bfloat16 arithmetic (Ampere or later). torch's default check also counts
    emulation, which says yes on a V100 or T4: training would run slowly in emulated bf16, and vLLM
    refuses bf16 there."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def gpu_of(model) -> list:
    """[the model's GPU], for `torch.random.fork_rng(devices=...)`: a sampling aside from training
    (a curve point, the pre-flight) leaves the GPU's generator as it found it too; [] on a CPU, so
    no GPU generator is forked (nor CUDA initialised).

    >>> import torch
    >>> gpu_of(torch.nn.Linear(2, 2))
    []
    """
    device = next(model.parameters()).device
    return [device] if device.type == "cuda" else []


def load_model(name_or_path: str, dtype: str = "auto", trust_remote_code: bool = False, revision: str | None = None,
               attn_implementation: str | None = None):
    """Causal LM from a folder or hub id; `trust_remote_code` stays off unless asked for.
    `revision`: a hub branch, tag or commit; `attn_implementation`: one of `ATTENTION` (None:
    transformers' choice, sdpa where it can)."""

    import torch
    from transformers import AutoModelForCausalLM

    check_attention(attn_implementation)
    if attn_implementation in ("flash_attention_2", "flash_attention_3") and not torch.cuda.is_available():
        raise UserError(f"model.attn_implementation={attn_implementation} needs a CUDA GPU; use sdpa here")
    if attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise UserError("model.attn_implementation=flash_attention_2 needs the flash-attn package (pip install flash-attn); or use sdpa")

    path = resolve_model(name_or_path)
    if dtype == "auto" and not torch.cuda.is_available():
        dtype = "float32"  # CPU: bf16 matmuls are slow or unsupported; weights may be stored in bf16
    torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    if torch_dtype is None:
        raise UserError(f"unknown dtype {dtype!r}; valid: auto, float32, bfloat16, float16")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust_remote_code, revision=revision,
                                                     attn_implementation=attn_implementation)
    except Exception as e:
        raise _load_error("model", name_or_path, e) from None
    # The HF Trainer saves `use_cache: false` into config.json; generation without the KV cache
    # recomputes every prefix (about 8x slower here, and what TRL's generate falls back to).
    model.config.use_cache = True
    if torch.cuda.is_available():  # evaluation and teachers generate on the GPU; trainers keep it there
        model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return model


def check_attention(attn_implementation: str | None) -> None:
    """Refuse an attention implementation transformers does not have, naming the valid ones.

    >>> check_attention("sdpa")
    >>> check_attention("flash")
    Traceback (most recent call last):
    rlsft.io.UserError: model.attn_implementation must be one of eager, sdpa, flash_attention_2, flash_attention_3, flex_attention (or unset), got 'flash'
    """
    if attn_implementation not in ATTENTION:
        raise UserError(f"model.attn_implementation must be one of {', '.join(a for a in ATTENTION if a)} (or unset), got {attn_implementation!r}")


def count_parameters(name_or_path: str, trust_remote_code: bool = False, count: Callable = n_params) -> int:
    """A model's parameter count without loading its weights: the model is built from its config
    on the meta device (no memory) and counted by `count` (`n_params`: tied weights once;
    `flop_parameters`: those the compute record prices)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise _load_error("model", name_or_path, e) from None
    with torch.device("meta"):
        return count(AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code))

