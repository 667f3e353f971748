"""Typed config: unknown keys, wrong types, overrides."""

import dataclasses

import pytest

from rlsft.config import apply_overrides, from_dict, load_config
from rlsft.io import UserError


@dataclasses.dataclass
class Inner:
    hidden_size: int = 64


@dataclasses.dataclass
class Cfg:
    name: str
    learning_rate: float = 1e-4
    ops: tuple[str, ...] = ("+",)
    model: Inner = dataclasses.field(default_factory=Inner)
    budget: float | None = None


def test_nested_and_coercion():
    cfg = from_dict(Cfg, {"name": "a", "learning_rate": 1, "ops": ["+", "-"], "model": {"hidden_size": 32}, "budget": "1e-3"})
    assert cfg == Cfg("a", 1.0, ("+", "-"), Inner(32), 0.001)


def test_unknown_key_names_closest():
    with pytest.raises(UserError, match="unknown key 'hiden_size'; did you mean 'hidden_size'"):
        from_dict(Cfg, {"name": "a", "model": {"hiden_size": 3}})


def test_wrong_type_and_missing():
    with pytest.raises(UserError, match="learning_rate: expected float, got 'fast'"):
        from_dict(Cfg, {"name": "a", "learning_rate": "fast"})
    with pytest.raises(UserError, match="expected int, got True"):
        from_dict(Cfg, {"name": "a", "model": {"hidden_size": True}})
    with pytest.raises(UserError, match="missing required key"):
        from_dict(Cfg, {})


def test_yaml_file_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("# comment\nname: x\nmodel:\n  hidden_size: 8\n")
    cfg = load_config(Cfg, f, ["model.hidden_size=16", "learning_rate=3e-4"])
    assert cfg.model.hidden_size == 16 and cfg.learning_rate == 3e-4
    with pytest.raises(UserError, match="is not key=value"):
        apply_overrides({}, ["oops"])
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(Cfg, tmp_path / "bad.yaml")
    (tmp_path / "obj.yaml").write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(UserError):  # safe_load refuses to build objects
        load_config(Cfg, tmp_path / "obj.yaml")
