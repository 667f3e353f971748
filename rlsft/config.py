"""Typed configuration: YAML files parsed into dataclasses, with `key=value` overrides.

- Every field is typed; a wrong type fails naming the field, the value and the type wanted.
- An unknown or misspelt key fails naming the key and the closest valid one.
- A *TRL section* (`trl_section`) is not declared here at all: its keys are the fields of TRL's
  own config class (`GRPOConfig`, `SFTConfig`, `DistillationConfig`, or transformers'
  `TrainingArguments` for the shared `training:` section), read from that class when the config is
  loaded, typed by its annotations, and handed to it unchanged. A field a new TRL release adds
  works with no edit here.
- Overrides on the command line are `key=value`, dotted for nested sections
  (`model.hidden_size=128`), with values read as YAML (`lr=1e-4`, `ops=[+,-]`).
- YAML is read with `yaml.safe_load`: no object construction from files.

The sections every recipe shares (`run`, `model`, `data`, `eval`, and `training:` for
TrainingArguments) are declared at the end; each recipe's `Config` adds its own.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import importlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rlsft.io import UserError
from rlsft.models import check_attention
from rlsft.scoring.evaluate import BACKENDS
from rlsft.scoring.tasks import TEMPLATES

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently convert: int -> float, list -> tuple, YAML's `no` back to an enum's "no")
    `value` against the annotation `tp`.

    >>> from transformers.trainer_utils import SaveStrategy
    >>> _coerce(False, SaveStrategy | str, "training.save_strategy")  # training.save_strategy=no
    'no'
    >>> _coerce(True, SaveStrategy | str, "training.save_strategy")
    Traceback (most recent call last):
    ...
    rlsft.io.UserError: training.save_strategy: expected one of no, steps, epoch, best, got True
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping for {_type_name(tp)}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        if args:
            return {_coerce(k, args[0], f"{where} key"): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):  # e.g. TrainingArguments' save_strategy: SaveStrategy | str
        values = [m.value for m in tp]
        if isinstance(value, bool) and ("yes" if value else "no") in values:  # YAML 1.1 reads no and yes as booleans
            return "yes" if value else "no"
        if value not in values and value not in list(tp):
            raise UserError(f"{where}: expected one of {', '.join(map(str, values))}, got {value!r}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 1e-4 as a string (YAML 1.1 quirk)
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp in (int, float) and isinstance(value, bool))):
        raise UserError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


# Fields of TRL's config classes that the lab sets from its own sections: where to set them instead.
OWNED_BY_THE_LAB = {"output_dir": "run.out_dir", "logging_dir": "run.out_dir", "run_name": "run.name", "seed": "run.seed",
                    "report_to": "run.report_to", "reward_weights": "rewards"}


def trl_section(config_class: str, **defaults: Any):
    """A dataclass field holding a section passed unchanged to TRL's `config_class`, given as
    "module:Class" (imported when a config is loaded). `defaults` are the recipe's own defaults;
    a YAML section is merged over them.

    >>> @dataclasses.dataclass
    ... class C:
    ...     training: dict = trl_section("transformers:TrainingArguments", learning_rate=1e-4)
    >>> from_dict(C, {"training": {"max_steps": 5}}).training
    {'learning_rate': 0.0001, 'max_steps': 5}
    >>> from_dict(C, {"training": {"max_step": 5}})
    Traceback (most recent call last):
    ...
    rlsft.io.UserError: training: unknown key 'max_step'; did you mean 'max_steps'? (the fields of transformers TrainingArguments)
    """
    return dataclasses.field(default_factory=lambda: dict(defaults), metadata={"trl": config_class})


def trl_class(config_class: str) -> type:
    """The class named "module:Class"."""

    module, name = config_class.split(":")
    return getattr(importlib.import_module(module), name)


@functools.lru_cache(maxsize=None)  # read once per class: a study loads many configs
def trl_fields(cls: type) -> dict[str, Any]:
    """{field name: annotation} of a TRL/transformers config class (the fields its __init__ takes)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def check_trl_section(config_class: str, data: Any, defaults: dict, where: str) -> dict:
    """`defaults` updated with `data`, each key a field of `config_class` with a value of its type."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of {config_class.replace(':', ' ')} fields, got {data!r}")
    fields = trl_fields(trl_class(config_class))
    out = dict(defaults)
    for key, value in data.items():
        if key in OWNED_BY_THE_LAB:
            raise UserError(f"{where}.{key} is set by the lab; set {OWNED_BY_THE_LAB[key]} instead")
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            raise UserError(f"{where}: unknown key {key!r}{hint} (the fields of {config_class.replace(':', ' ')})")
        out[key] = _coerce(value, fields[key], f"{where}.{key}")
    return out


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass `cls` from a dict, failing loudly on unknown keys and wrong types.

    >>> @dataclasses.dataclass
    ... class C:
    ...     learning_rate: float = 1e-4
    ...     steps: int = 10
    >>> from_dict(C, {"steps": 3})
    C(learning_rate=0.0001, steps=3)
    >>> from_dict(C, {"lerning_rate": 3e-4})
    Traceback (most recent call last):
    ...
    rlsft.io.UserError: config: unknown key 'lerning_rate'; did you mean 'learning_rate'? (valid: learning_rate, steps)
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            raise UserError(f"{where}: unknown key {key!r}{hint} (valid: {', '.join(fields)})")
        here = f"{where}.{key}" if where != "config" else key
        trl = fields[key].metadata.get("trl")
        if trl:
            kwargs[key] = check_trl_section(trl, value, fields[key].default_factory(), here)
        else:
            kwargs[key] = _coerce(value, hints[key], here)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{where}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # the dataclass's own validation
        said = str(e)  # a section's own check may name it already ("arith: ..."): not twice
        raise UserError(said if said.startswith(f"{where}: ") or said.startswith(f"{where.rsplit('.', 1)[-1]}: ") and where != "config"
                        else f"{where}: {said}") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key=value` overrides (dotted keys for nested sections) to a raw config dict.

    >>> apply_overrides({"model": {"hidden_size": 64}}, ["model.hidden_size=128", "seed=3"])
    {'model': {'hidden_size': 128}, 'seed': 3}
    """
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.load(raw, Loader=UniqueKeyLoader) if raw else ""
        except yaml.YAMLError as e:
            raise UserError(f"override {item!r}: not a YAML value ({str(e).splitlines()[0]})") from None
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            child = node.get(p)
            child = dict(child) if isinstance(child, dict) else {}
            node[p] = child
            node = child
        node[parts[-1]] = value
    return data


class UniqueKeyLoader(yaml.SafeLoader):
    r"""YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    silently: a second `training:` section would drop the first's settings).

    >>> yaml.load("a: 1\nb: 2", Loader=UniqueKeyLoader)
    {'a': 1, 'b': 2}
    >>> yaml.load("a: 1\na: 2", Loader=UniqueKeyLoader)
    Traceback (most recent call last):
    ...
    yaml.constructor.ConstructorError: found the key 'a' twice (line 2)
    """

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"found the key {key!r} twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of keys")
    return data


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Read YAML `path`, apply overrides, and build `cls`; errors name the file."""
    data = apply_overrides(read_yaml(path), overrides or [])
    try:
        return from_dict(cls, data)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None


def to_dict(cfg: Any) -> dict:
    """Plain dict of a (nested) dataclass config, tuples as lists: ready for YAML/JSON."""
    return yaml.safe_load(yaml.safe_dump(_plain(dataclasses.asdict(cfg))))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


# --------------------------------------------------------------------------- the sections every recipe shares


@dataclass
class RunConfig:
    name: str  # run name: wandb's run name, and the default folder runs/<name>
    out_dir: str | None = None
    seed: int = 0
    report_to: str = "wandb"  # wandb (offline when there is no key) or none
    wandb_project: str = "rlsft"
    group: str | None = None  # wandb group: a study's runs share their study's name

    def __post_init__(self):
        if self.report_to not in ("wandb", "none"):
            raise ValueError(f"report_to must be wandb or none, got {self.report_to!r}")


DTYPES = ("auto", "float32", "bfloat16", "float16")  # a model's weights (rlsft.models.load_model)


@dataclass
class ModelConfig:
    name: str = "micro-student"  # micro model name, local folder or hub id
    # the weights' dtype: auto is the checkpoint's own on a GPU (bf16 for Qwen2.5) and float32 on a
    # CPU. Trained weights in bf16 lose the small updates (the run warns: stalled_update_share);
    # float32 weights train under bf16 autocast on a bf16 GPU
    dtype: str = "auto"
    trust_remote_code: bool = False
    revision: str | None = None  # hub branch, tag or commit of model.name (None: main)
    attn_implementation: str | None = None  # eager, sdpa, flash_attention_2 (GPU, flash-attn), ...; None: transformers' choice
    lora_r: int = 0  # LoRA rank through peft (0: full fine-tuning); the saved model is merged, so stages chain
    lora_alpha: int = 32
    lora_dropout: float = 0.0  # > 0 also perturbs GRPO's sampling (TRL generates in training mode) and keeps LoRA unmerged there
    lora_target_modules: str = "all-linear"

    def __post_init__(self):
        check_attention(self.attn_implementation)
        if self.dtype not in DTYPES:
            raise UserError(f"model.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


@dataclass
class DataConfig:
    task: str = "micro-arith"
    n_train: int | None = 2000  # training prompts (None: the whole train split)
    source: str | None = None  # local JSONL or hub id replacing the task's default data
    template: str = "auto"  # auto (chat when the model has a chat template), r1-zero (plain prompt) or chat
    zh_prompt_share: float = 0.0  # share of training prompts written in Chinese (tasks that can translate)
    # open every completion with <think> in the prompt (chat: inside the opened assistant turn) and
    # stop generation at </answer>, in GRPO's training, the pre-flight probe and evaluation alike
    # (on-policy distillation's rollouts open with it but are not cut at </answer>)
    think_prefill: bool = False

    def __post_init__(self):
        if not 0.0 <= self.zh_prompt_share <= 1.0:
            raise UserError(f"data.zh_prompt_share must be in [0, 1], got {self.zh_prompt_share}")
        if self.n_train is not None and self.n_train < 1:
            raise UserError(f"data.n_train must be at least 1, got {self.n_train} (null: the whole train split)")
        if self.template not in TEMPLATES:
            raise UserError(f"data.template must be one of {', '.join(TEMPLATES)}, got {self.template!r}")


@dataclass
class EvalConfig:
    tasks: list[str] = field(default_factory=lambda: ["micro-arith"])  # held-out evaluation after training
    n: int | None = 256  # problems per task (None: whole split)
    split: str = "test"  # test, or validation: where sweeps and every setting chosen from runs read
    samples: int = 8  # K of pass@K
    temperature: float = 1.0
    top_p: float = 1.0  # nucleus sampling of the evaluation (1.0: plain sampling)
    max_new_tokens: int = 128
    batch_size: int | None = None  # sequences per generate call (None: sized from memory_gb)
    memory_gb: float = 4.0  # generation memory budget that sizes the batch (4: a 0.5B model's 64 sequences of 128 tokens)
    before: bool = True  # also evaluate the starting model, with the same settings
    before_samples: int | None = None  # samples per problem for the starting model (None: `samples`); e.g. the base's pass@64 alone
    # a folder shared by runs that start from the same model (a study's arms of one seed): the evaluation
    # before training is made once per (model, settings, seed) and copied into each run (None: not shared)
    before_cache: str | None = None
    # training steps at which the first task is evaluated too, with the same settings, for the
    # accuracy-against-compute curve (multiples of training.logging_steps; [] for none)
    curve_steps: list[int] = field(default_factory=list)
    curve_samples: int | None = None  # samples per problem at curve checkpoints (None: `samples`)
    # generation: auto (vLLM where it is installed and a GPU is present, from the saved model; curve
    # checkpoints, in memory, always use transformers), transformers, or vllm
    backend: str = "auto"

    def __post_init__(self):
        if not 0.0 < self.top_p <= 1.0:
            raise UserError(f"eval.top_p must be in (0, 1], got {self.top_p}")
        if not self.temperature >= 0.0:  # NaN fails too
            raise UserError(f"eval.temperature must be at least 0, got {self.temperature}")
        if not self.tasks:
            raise UserError("eval.tasks is empty: name at least one task (the first also gets the curve)")
        for key in ("n", "samples", "max_new_tokens", "before_samples", "curve_samples", "batch_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise UserError(f"eval.{key} must be at least 1, got {value}" + (" (null: the whole split)" if key == "n" else ""))
        if self.backend not in BACKENDS:
            raise UserError(f"eval.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")


@dataclass
class RecipeConfig:
    """The sections every recipe's config has; a recipe's `Config` adds its own and its TRL sections."""

    run: RunConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        if self.eval.split not in ("test", "validation"):
            raise UserError(f"eval.split must be test or validation, got {self.eval.split!r}")


def training_section(**recipe_defaults):
    """The shared `training:` section: fields of transformers' `TrainingArguments`."""
    return trl_section("transformers:TrainingArguments", **recipe_defaults)
