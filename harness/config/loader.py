"""Loading and validating a config: profile YAML over a recipe, dotted overrides, type and range checks."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from harness.config.errors import ConfigError
from harness.config.schema import (
    CODE_BENCHMARKS,
    MATH_BENCHMARKS,
    SUITE_NAMES,
    CodeSuiteConfig,
    Config,
    MathSuiteConfig,
    Range,
    ReasoningGymSuiteConfig,
    SuitesConfig,
    TinyModelConfig,
)

PROFILES_DIR = Path(__file__).parent.parent / "profiles"
RECIPES_DIR = Path(__file__).parent.parent / "recipes"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


DEFAULT_RECIPE = "prorl"
"""Recipe under every config that names none: the step-scaling recipe, which is also what the
tiny base's RL phase runs (harness/jobs/base_model.py)."""


def load_config(profile: str, overrides: list[str] | tuple[str, ...] = (), recipe: str | None = None) -> Config:
    """Load a profile by name (or YAML path), layered over a recipe (default: DEFAULT_RECIPE), then
    apply dotted `key=value` overrides and validate. Precedence: overrides > profile > recipe > defaults."""
    path = _find(profile, PROFILES_DIR, "profile", available_profiles())
    raw = _read_yaml(path)
    name = path.stem
    raw.setdefault("profile", name)
    recipe = recipe or DEFAULT_RECIPE
    raw = _merge(_read_yaml(_find(recipe, RECIPES_DIR, "recipe", available_recipes())), raw)
    for item in overrides:
        apply_override(raw, item)
    return from_dict(Config, raw)


def _find(name: str, folder: Path, kind: str, known: list[str]) -> Path:
    """A named file in `folder`, or a YAML path given directly."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{kind} file '{name}' does not exist")
        return path
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown {kind} '{name}'; valid {kind}s: {', '.join(known)} (or a path to a .yaml file)")
    return path


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"'{path}'{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"'{path}' must be a mapping of keys to values, got {type(raw).__name__}")
    return raw


def _merge(base: dict, top: dict) -> dict:
    """`top` over `base`, recursively for mappings."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` in a raw config dict; the key must exist in the schema."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{item}' is not of the form key=value (for example eval.k=8)")
    parts = key.split(".")
    _check_key_path(Config, parts, key)
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _check_key_path(cls: type, parts: list[str], full_key: str) -> None:
    current: Any = cls
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(current):
            if _is_free_dict(current):
                return  # free-form mapping: any sub-key is allowed
            parent = ".".join(parts[:i])
            raise ConfigError(f"unknown config key '{full_key}': '{parent}' is a value, not a section")
        hints = _hints(current)
        if part not in hints:
            section = ".".join(parts[:i])
            where = f"under '{section}'" if section else "at top level"
            raise ConfigError(
                f"unknown config key '{full_key}'; valid keys {where}: {', '.join(hints)}"
            )
        current = _strip_annotated(hints[part])
        if typing.get_origin(current) is list:
            if i + 1 < len(parts):
                raise ConfigError(
                    f"unknown config key '{full_key}': '{'.'.join(parts[: i + 1])}' is a list; "
                    "override it whole (for example with a YAML list)"
                )
            return


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _strip_annotated(tp: Any) -> Any:
    return typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp


def _is_free_dict(tp: Any) -> bool:
    return typing.get_origin(tp) is dict or tp is dict


def from_dict(cls: type, data: Any, prefix: str = ""):
    """Build dataclass `cls` from a raw mapping, checking every key and value."""
    where = prefix.rstrip(".") or "the profile"
    if not isinstance(data, dict):
        raise ConfigError(f"'{where}' must be a mapping of keys to values, got {data!r}")
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            section = prefix.rstrip(".")
            place = f"under '{section}'" if section else "at top level"
            raise ConfigError(
                f"unknown config key '{prefix}{key}'; valid keys {place}: {', '.join(hints)}"
            )
        kwargs[key] = _convert(hints[key], value, f"{prefix}{key}")
    obj = cls(**kwargs)
    _check_consistency(obj)
    return obj


def _convert(tp: Any, value: Any, key: str) -> Any:
    rng = None
    if typing.get_origin(tp) is Annotated:
        tp, *extras = typing.get_args(tp)
        rng = next((e for e in extras if isinstance(e, Range)), None)
    origin = typing.get_origin(tp)

    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".")
    if tp is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"invalid value for '{key}': {value!r}; valid: {', '.join(map(str, choices))}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"invalid value for '{key}': {value!r}; expected a list")
        return [_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"invalid value for '{key}': {value!r}; expected a mapping")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"invalid value for '{key}': {value!r}; expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"invalid value for '{key}': {value!r}; expected an integer{_rng(rng)}")
    elif tp is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML 1.1 reads "1e-3" as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"invalid value for '{key}': {value!r}; expected a number{_rng(rng)}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"invalid value for '{key}': {value!r}; expected a string")
        return value
    if rng is not None:
        if (rng.min is not None and value < rng.min) or (rng.max is not None and value > rng.max):
            raise ConfigError(f"invalid value for '{key}': {value!r}; must be {rng.describe()}")
    return value


def _rng(rng: Range | None) -> str:
    return f" {rng.describe()}" if rng is not None else ""


def _check_consistency(obj: Any) -> None:
    """Cross-field rules that a single field's type cannot express."""
    if isinstance(obj, Config):
        _check_float64(obj)
    if isinstance(obj, TinyModelConfig):
        if obj.hidden_size % obj.num_attention_heads:
            raise ConfigError(
                f"invalid value for 'bootstrap.model.num_attention_heads': {obj.num_attention_heads}; "
                f"must divide bootstrap.model.hidden_size ({obj.hidden_size})"
            )
        if obj.num_attention_heads % obj.num_key_value_heads:
            raise ConfigError(
                f"invalid value for 'bootstrap.model.num_key_value_heads': {obj.num_key_value_heads}; "
                f"must divide bootstrap.model.num_attention_heads ({obj.num_attention_heads})"
            )
    if isinstance(obj, ReasoningGymSuiteConfig) and not obj.tasks:
        raise ConfigError("invalid value for 'suites.reasoning_gym.tasks': []; give at least one task")
    if isinstance(obj, (MathSuiteConfig, CodeSuiteConfig)):
        domain = "math" if isinstance(obj, MathSuiteConfig) else "code"
        known = MATH_BENCHMARKS if domain == "math" else CODE_BENCHMARKS
        bad = [b for b in obj.benchmarks if b not in known]
        if bad or not obj.benchmarks:
            raise ConfigError(f"invalid value for 'suites.{domain}.benchmarks': {obj.benchmarks!r}; "
                              f"valid: a non-empty list of {', '.join(known)}")
        if not obj.tasks:
            raise ConfigError(f"invalid value for 'suites.{domain}.tasks': []; give at least one task")
        # task names are the suites' to check (suites.check_suites): the config layer imports no suite
    if isinstance(obj, SuitesConfig) and not obj.enabled:
        raise ConfigError(f"invalid value for 'suites.enabled': []; valid: a non-empty list of {', '.join(SUITE_NAMES)}")
    if isinstance(obj, SuitesConfig):
        # one problem must land in one split whichever suite words it (suites/procedural.py)
        procedural = {name: getattr(obj, name).heldout_fraction for name in obj.enabled
                      if name == "reasoning_gym" or getattr(obj, name).source == "procedural"}
        if len(set(procedural.values())) > 1:
            given = ", ".join(f"suites.{name}.heldout_fraction={v:g}" for name, v in procedural.items())
            raise ConfigError(f"procedural suites must share one heldout_fraction (got {given}): the split of a "
                              "problem asked by two suites would otherwise differ between them; set them equal")


def _check_float64(cfg: Config) -> None:
    """float64 is the regression guard's machine-independent precision (harness/regress.py), all or
    nothing: a float64 base, policy or rollout beside a lower precision would put the rounding of the
    machine's kernels back, and neither vLLM nor verl runs float64."""
    given = {"bootstrap.dtype": cfg.bootstrap.dtype, "train.dtype": cfg.train.dtype, "rollout.dtype": cfg.rollout.dtype}
    wide = [k for k, v in given.items() if v == "float64"]
    if not wide:
        return
    if cfg.rollout.engine != "hf":
        raise ConfigError(f"invalid value for '{wide[0]}': 'float64'; the {cfg.rollout.engine} engine does not run float64 "
                          "(use rollout.engine=hf, or float32)")
    need = ["train.dtype", "rollout.dtype"] + (["bootstrap.dtype"] if cfg.bootstrap.dtype == "float64" else [])
    narrow = [k for k in need if given[k] != "float64"]
    if narrow:
        raise ConfigError(f"invalid value for '{narrow[0]}': '{given[narrow[0]]}'; with {wide[0]}=float64 set "
                          f"{' and '.join(narrow)} to float64 too (float64 is all or nothing; harness regress sets all three)")


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (for provenance and cache keys)."""
    return dataclasses.asdict(cfg)
