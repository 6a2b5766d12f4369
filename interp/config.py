"""Config files: one pydantic base class, one loader, one error.

Every run the CLI starts (``interp patch``, ``interp attribute``, ``interp sae train``) is described
by a YAML or TOML file validated against a subclass of :class:`ConfigModel` before any work starts::

    config = load_config("data/ioi_resid.yaml", PatchConfig, ["sweeps.0.layers=[0,1]", "device=cuda"])

:class:`ConfigModel` forbids unknown keys and is immutable, so a typo is an error rather than a
silently ignored setting. Overrides are ``KEY=VALUE`` strings (the CLI's repeatable ``--set``):
``KEY`` is a dotted path into the file's mapping (integers index lists), ``VALUE`` is read as YAML
(``[0,1]`` is a list, ``3`` an int, ``cuda`` a string). Every problem raises :class:`ConfigError`
listing each bad setting by its dotted path with the value given and what is allowed::

    invalid config data/ioi_resid.yaml:
      direction: Input should be 'denoising' or 'noising' (got 'sideways')
      sweeps.0.layerz: unknown key; did you mean 'layers'? (allowed: heads, layers, neurons, positions, sweep)

Reading is bounded: YAML aliases may not expand a document beyond :data:`MAX_YAML_NODES` nodes (a
few hundred bytes of nested aliases would otherwise stand for billions of values), and values
echoed in messages are cut to :data:`SHOWN_CHARS` characters.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import torch
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo

from interp.errors import InterpError

SUFFIXES = (".yaml", ".yml", ".toml")
# YAML aliases (``*name``) reuse a node without copying it, so a few hundred bytes of nested aliases
# ("billion laughs") stand for billions of values once copied, validated or printed. A document whose
# aliases expand it beyond this many nodes is refused before anything is built from it.
MAX_YAML_NODES = 10_000
SHOWN_CHARS = 200  # values echoed in error messages are cut to this many characters
# Validation context key: when true, a config's ``Device`` fields are checked for their form only, and
# whether the device works is left to the workers that will run on it (the Ray executor: a driver
# without a GPU sends ``device: cuda`` work to actors that have one; each actor checks at its start).
DEVICE_ON_WORKERS = "device_on_workers"
Dtype = Literal["float32", "float64", "bfloat16", "float16"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


class ConfigError(InterpError, ValueError):
    """A config file or override that is missing, unreadable, or has a wrong key or value."""


class ConfigModel(BaseModel):
    """Base of every config section: unknown keys are refused and values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Schema = TypeVar("Schema", bound=ConfigModel)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a ``.yaml``, ``.yml`` or ``.toml`` file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    if file.suffix not in SUFFIXES:
        raise ConfigError(f"{file}: use a .yaml, .yml or .toml file")
    text = file.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if file.suffix == ".toml" else load_yaml(text, str(file))
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{file} does not parse: {shorten(str(error), 500)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} must hold a mapping of settings at the top level, got {type(raw).__name__}")
    return raw


def load_yaml(text: str, origin: str = "YAML") -> Any:
    """``yaml.safe_load(text)``, refusing documents whose aliases expand beyond :data:`MAX_YAML_NODES` nodes."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        distinct, expanded = _node_counts(node, origin)
        if expanded > MAX_YAML_NODES and expanded > distinct:
            raise ConfigError(
                f"{origin}: its YAML aliases (*name) expand to more than {MAX_YAML_NODES:,} values "
                f"({distinct:,} written); write the values out, or use fewer nested aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _node_counts(root: yaml.Node, origin: str) -> tuple[int, int]:
    """How many distinct nodes the composed document has, and how many it has with every alias expanded."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise ConfigError(f"{origin}: a YAML alias refers to the node that contains it (a cycle); remove it")
        busy.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        busy.discard(key)
        sizes[key] = min(total, MAX_YAML_NODES + 1)  # capped: the sum cannot grow without bound
        return sizes[key]

    expanded = size(root)
    return len(sizes), expanded


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters (with how much was left out), for echoing values in messages."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters."""
    return shorten(repr(value), limit)


def available_devices() -> list[str]:
    """The devices a run can use on this machine: ``cpu``, each CUDA GPU torch sees, and ``mps``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_device(name: str, allow_auto: bool = False, here: bool = True) -> str:
    """``name`` if torch can run on it here, else :class:`ConfigError` naming the devices that can.

    A config field validator: a device that cannot work is refused when the config is read, before
    any model is loaded or run directory created. With ``here=False`` only the name's form is checked
    (a torch device of type cpu, cuda or mps): the workers that run on it check it themselves.
    """
    valid = (["auto"] if allow_auto else []) + available_devices()
    if allow_auto and name == "auto":
        return name
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        hint = " ('gpu' is spelled 'cuda' in torch)" if "gpu" in str(name).lower() else ""
        raise ConfigError(f"not a torch device{hint}; use one of {', '.join(valid)}") from None
    if device.type == "cpu" or (not here and device.type in ("cuda", "mps")):
        return name
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"CUDA is not available: torch sees no CUDA GPU here; use one of {', '.join(valid)}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"no such GPU: this machine has {torch.cuda.device_count()} CUDA GPU(s); use one of {', '.join(valid)}")
        return name
    if device.type == "mps" and "mps" in valid:
        return name
    raise ConfigError(f"not a device runs can use here; use one of {', '.join(valid)}")


def _device_field(name: str, info: ValidationInfo) -> str:
    """:func:`check_device` of a config field, left to the workers when the context says so."""
    return check_device(name, here=not (info.context or {}).get(DEVICE_ON_WORKERS, False))


Device = Annotated[str, AfterValidator(_device_field)]
"""A config field naming a torch device ("cpu", "cuda", "cuda:1"), checked when read: that it can run
here, or (validation context :data:`DEVICE_ON_WORKERS`) only its form, for runs whose workers check it."""


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=[0,1]", "c=cuda"]`` as ``{"a.b": [0, 1], "c": "cuda"}`` (values read as YAML)."""
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {shown(item)} is not KEY=VALUE (e.g. sweeps.0.layers=[0,1])")
        try:
            parsed[key.strip()] = load_yaml(text, f"override {shown(key.strip())}")
        except yaml.YAMLError as error:
            raise ConfigError(f"override {shown(item)}: the value does not parse as YAML: {shorten(str(error), 500)}") from None
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with each dotted key set (missing mappings on the way are created)."""
    result = _copy(raw)
    for key, value in overrides.items():
        parts = key.split(".")
        target: Any = result
        for depth, part in enumerate(parts[:-1]):
            where = ".".join(parts[: depth + 1])
            if isinstance(target, list):
                target = target[_index(part, target, where, key)]
            else:
                target = target.setdefault(part, {})
            if not isinstance(target, (dict, list)):
                raise ConfigError(f"override {key!r}: {where} holds {shown(target)}, not a mapping or list")
        last = parts[-1]
        if isinstance(target, list):
            target[_index(last, target, key, key)] = value
        else:
            target[last] = value
    return result


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _index(part: str, items: list[Any], where: str, key: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(items) <= int(part) < len(items):
        raise ConfigError(f"override {key!r}: {where} indexes a list of {len(items)} item(s); use 0..{len(items) - 1}")
    return int(part)


def validate(
    raw: Mapping[str, Any], schema: type[Schema], origin: str = "config", device_on_workers: bool = False
) -> Schema:
    """``raw`` validated against ``schema``; :class:`ConfigError` lists every problem by key path.

    ``device_on_workers`` checks ``Device`` fields for their form only (see :data:`DEVICE_ON_WORKERS`).
    """
    try:
        return schema.model_validate(raw, context={DEVICE_ON_WORKERS: device_on_workers})
    except ValidationError as error:
        lines = "\n".join(f"  {describe(schema, e)}" for e in error.errors())
        raise ConfigError(f"invalid config {origin}:\n{lines}") from None


def load_config(
    path: str | Path,
    schema: type[Schema],
    overrides: Sequence[str] | Mapping[str, Any] = (),
    device_on_workers: bool = False,
) -> Schema:
    """Read a YAML/TOML file, apply overrides (``KEY=VALUE`` strings or a dotted-key mapping), validate.

    ``device_on_workers``: the run's workers check its device, not this process (see :func:`validate`).
    """
    given = parse_overrides(overrides) if not isinstance(overrides, Mapping) else overrides
    return validate(apply_overrides(read_mapping(path), given), schema, str(path), device_on_workers)


def describe(schema: type[BaseModel], error: Mapping[str, Any]) -> str:
    """One pydantic error as ``path: problem (got value)``, naming close keys for an unknown one."""
    loc = tuple(error["loc"])
    path = ".".join(str(part) for part in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = sorted(fields_at(schema, loc[:-1]))
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{path}: unknown key{hint} (allowed: {', '.join(allowed)})"
    message = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
    value = error.get("input")
    got = "" if error["type"] == "missing" or isinstance(value, (dict, list)) else f" (got {shown(value)})"
    return f"{path}: {shorten(message, 2 * SHOWN_CHARS)}{got}"


def fields_at(schema: type[BaseModel], loc: tuple[Any, ...]) -> set[str]:
    """The keys the models at ``loc`` accept (list indices and union tags in ``loc`` are passed over)."""
    models = [schema]
    for part in loc:
        inner = [m for model in models if part in model.model_fields for m in _models(model.model_fields[part].annotation)]
        if inner:
            models = inner
    return {name for model in models for name in model.model_fields}


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated, list, tuple, dict):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []
