"""SAEs on disk: SAELens's layout as our own, and readers for SAELens's and sparsify's files.

**Our format is SAELens's** (one directory per SAE), so SAELens, SAEBench, SAEDashboard and
Neuronpedia tooling read what we write:

* ``sae_weights.safetensors``: ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d_in]``,
  ``b_dec [d_in]`` (+ ``threshold [d_sae]`` for JumpReLU), in the config's dtype;
* ``cfg.json``: ``architecture``, ``d_in``, ``d_sae``, ``dtype``, ``device``,
  ``apply_b_dec_to_input``, ``normalize_activations``, ``reshape_activations``, the architecture's
  fields and ``metadata``;
* ``sparsity.safetensors`` (optional): ``sparsity`` = log10 firing density per latent.

Three traps of SAELens 6.x's loader, each checked against the real package (``tests/fixtures/sae``
holds files it wrote, ``scripts/sae_lens_interop.py`` loads ours with it):

1. a ``topk`` config without ``k`` silently loads with k = 100, so ``k`` is always written;
2. without ``metadata.sae_lens_version`` the file is taken for a pre-6.0 one and the nested
   ``metadata.hook_name`` is dropped, so we write the version whose layout we follow;
3. its sparsify importer transposes ``W_dec`` (sparsify stores it ``[d_sae, d_in]`` already), gets
   ``apply_b_dec_to_input`` wrong and forces bfloat16, so :func:`load` reads sparsify's files itself.

How each of our activations is stored: TopK as ``topk``; g-SAE as ``topk`` (its inference form;
the gradient only steers selection during training); BatchTopK as ``jumprelu`` with its global
threshold repeated per latent (what SAELens itself does); ReLU as ``standard``; top-AFA as
``top_afa``, which SAELens loads once :mod:`interp.sae.saelens_plugin` is imported (without it,
SAELens raises ``KeyError: 'top_afa'``). The exact activation config (kind and hyperparameters) is
kept under ``metadata.interp`` so that our loader restores it exactly; other tools ignore it.

Reading: SAELens 6.x and pre-6.0 configs (flat ``hook_point``, ``activation_fn_kwargs.k``,
``log_threshold``), decoder-norm rescaling folded into the weights; sparsify's
``<hookpoint>/cfg.json`` + ``sae.safetensors`` with ``W_enc = encoder.weight^T`` and the hookpoint
mapped to a site (``layers.N``/``h.N`` are the block outputs, ``blocks.N.hook_resid_post``).
Every tensor the format defines is required (``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``, and
``threshold`` for JumpReLU/BatchTopK; sparsify's ``encoder.weight``/``encoder.bias``/``W_dec``/``b_dec``):
a missing one is refused rather than read as zeros, except ``b_enc`` of top-AFA, which uses no
encoder bias (a warning). ``k``, ``k_max``, ``d_in``, ``d_sae`` must be positive integers with
``k <= d_sae``; a malformed directory raises :class:`SAEFormatError` naming the file and the field.
Architectures we cannot evaluate faithfully (gated, transcoders, skip connections, groupmax,
``hook_z`` reshaping, run-time normalisations other than layer_norm) are refused with the reason.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from interp.errors import InterpError
from interp.sae.activations import (
    ACTIVATIONS,
    BatchTopKConfig,
    GSAEConfig,
    JumpReLUConfig,
    ReLUConfig,
    TopAFAConfig,
    TopKConfig,
)
from interp.sae.sae import SAE, SAEConfig

SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_CFG = "cfg.json"
SAELENS_SPARSITY = "sparsity.safetensors"
SPARSIFY_WEIGHTS = "sae.safetensors"
# The SAELens release whose on-disk layout we write (checked with that package); >= 6.0 selects
# SAELens's current config handling (trap 2 above).
SAE_LENS_FORMAT_VERSION = "6.54.12"
SAELENS_DEFAULT_K = 100
INTERP_FORMAT = 1
# metadata keys every saved file carries; dropped again on load when they hold these values
_WRITTEN_BY_DEFAULT: dict[str, Any] = {
    "sae_lens_version": SAE_LENS_FORMAT_VERSION,
    "sae_lens_training_version": SAE_LENS_FORMAT_VERSION,
    "hook_head_index": None,
    "model_from_pretrained_kwargs": {},
}


class SAEFormatError(InterpError, ValueError):
    """A directory that is not an SAE we can read, or an SAE we cannot represent faithfully."""


def _architecture(sae: SAE) -> str:
    kind = sae.config.activation.kind
    return {"topk": "topk", "gsae": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu", "relu": "standard"}.get(
        kind, kind
    )


def saelens_config(sae: SAE) -> dict[str, Any]:
    """The ``cfg.json`` dictionary for ``sae`` (SAELens 6.x inference config)."""
    cfg = sae.config
    metadata = {
        **_WRITTEN_BY_DEFAULT,
        "model_name": cfg.model,
        "hook_name": cfg.site,
        **cfg.metadata,
        "interp": {"format": INTERP_FORMAT, "activation": cfg.activation.model_dump()},
    }
    out: dict[str, Any] = {
        "architecture": _architecture(sae),
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": cfg.dtype,
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": cfg.normalize_activations,
        "reshape_activations": "none",
        "metadata": metadata,
    }
    k = sae.activation.inference_k()
    if k is not None:
        out["k"] = k
        out["rescale_acts_by_decoder_norm"] = False
    if cfg.activation.kind == "top_afa":
        out["k_max"] = cfg.activation.k_max
    return out


def save_sae(sae: SAE, path: str | Path, sparsity: Tensor | None = None) -> Path:
    """Write ``sae`` in SAELens's layout into the directory ``path`` (created if needed)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, sae.config.dtype)
    tensors = {name: getattr(sae, name).detach().to("cpu", dtype).contiguous() for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    threshold = getattr(sae.activation, "threshold", None)
    if threshold is not None:
        tensors["threshold"] = threshold.detach().to("cpu", dtype).expand(sae.d_sae).contiguous()
    save_file(tensors, str(directory / SAELENS_WEIGHTS))
    (directory / SAELENS_CFG).write_text(json.dumps(saelens_config(sae), indent=2))
    if sparsity is not None:
        save_file({"sparsity": sparsity.detach().to("cpu", torch.float32).contiguous()}, str(directory / SAELENS_SPARSITY))
    return directory


def load(path: str | Path, device: torch.device | str = "cpu") -> SAE:
    """Load an SAE directory written by us, by SAELens (6.x or older) or by sparsify (one hookpoint).

    The SAE comes back in eval mode (BatchTopK then uses its threshold) on ``device``.
    """
    directory = Path(path)
    if not directory.exists():
        raise SAEFormatError(f"{directory} does not exist; give an SAE directory (with cfg.json and {SAELENS_WEIGHTS} or {SPARSIFY_WEIGHTS})")
    if not directory.is_dir():
        raise SAEFormatError(f"{directory} is a file; give the SAE directory that holds it")
    if (directory / SAELENS_WEIGHTS).is_file():
        sae = _load_saelens(directory)
    elif (directory / SPARSIFY_WEIGHTS).is_file():
        sae = _load_sparsify(directory)
    else:
        found = sorted(
            p.name for p in directory.iterdir() if p.is_dir() and ((p / SAELENS_WEIGHTS).is_file() or (p / SPARSIFY_WEIGHTS).is_file())
        ) if directory.is_dir() else []
        hint = f"; it holds SAE folders {found}: load one of them" if found else ""
        raise SAEFormatError(f"{directory} has neither {SAELENS_WEIGHTS} (SAELens) nor {SPARSIFY_WEIGHTS} (sparsify){hint}")
    return sae.to(device).eval()


def load_sparsity(path: str | Path) -> Tensor | None:
    """The log10 firing densities stored next to an SAE, if any."""
    file = Path(path) / SAELENS_SPARSITY
    if not file.is_file():
        return None
    with safe_open(str(file), framework="pt") as handle:
        return handle.get_tensor("sparsity")


def _read_tensors(file: Path) -> dict[str, Tensor]:
    try:
        with safe_open(str(file), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises its own SafetensorError (not an OSError) on a bad file
        reason = _short(str(error) or type(error).__name__)
        raise SAEFormatError(f"{file} is not a readable safetensors file ({reason}); it may be truncated: copy it again") from None


def _short(text: str, limit: int = 200) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_cfg(directory: Path) -> dict[str, Any]:
    """The ``cfg.json`` of an SAE directory as a dict; :class:`SAEFormatError` if missing or malformed."""
    file = directory / SAELENS_CFG
    if not file.is_file():
        raise SAEFormatError(f"{file} is missing; an SAE directory needs its {SAELENS_CFG} next to the weights")
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise SAEFormatError(f"{file} is not valid JSON ({_short(str(error))})") from None
    if not isinstance(cfg, dict):
        raise SAEFormatError(f"{file} must hold a JSON object of settings, got {type(cfg).__name__}")
    return cfg


def _count(cfg: dict[str, Any], field: str, file: Path, default: int | None = None) -> int | None:
    """``cfg[field]`` as a positive integer (``default`` when absent or null); refuses 0, negatives, non-integers."""
    value = cfg.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise SAEFormatError(f"{file}: {field} must be a positive integer, got {_short(repr(value), 60)}; fix {field} in the file")
    return int(value)


def _require(tensors: dict[str, Tensor], names: set[str], file: Path) -> None:
    missing = sorted(names - set(tensors))
    if missing:
        raise SAEFormatError(f"{file} lacks tensor(s) {missing} (has {sorted(tensors)}); the SAE cannot be loaded without them")


def _upgrade_pre6(cfg: dict[str, Any]) -> dict[str, Any]:
    """Bring a pre-6.0 SAELens config (flat keys) into the 6.x shape."""
    cfg = {{"hook_point": "hook_name", "activation_fn_str": "activation_fn"}.get(k, k): v for k, v in cfg.items()}
    metadata = dict(cfg.get("metadata") or {})
    for key in ("model_name", "hook_name", "hook_head_index", "context_size", "prepend_bos", "dataset_path"):
        if key in cfg and key not in metadata:
            metadata[key] = cfg[key]
    cfg["metadata"] = metadata
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if cfg.get("activation_fn") == "topk" and kwargs.get("k") is not None:
        cfg["architecture"] = "topk"
        cfg["k"] = kwargs["k"]
    cfg.setdefault("architecture", "standard")
    cfg.setdefault("apply_b_dec_to_input", True)
    return cfg


def _is_pre6(cfg: dict[str, Any]) -> bool:
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    if not version:
        return True
    major = re.match(r"(\d+)", str(version))
    return major is None or int(major.group(1)) < 6


def _activation_from_saelens(cfg: dict[str, Any], directory: Path) -> Any:
    file = directory / SAELENS_CFG
    metadata = cfg.get("metadata") or {}
    ours = metadata.get("interp", {}).get("activation") if isinstance(metadata, dict) and isinstance(metadata.get("interp"), dict) else None
    if ours is not None:
        kinds = {c.model_fields["kind"].default: c for c in (TopKConfig, BatchTopKConfig, TopAFAConfig, GSAEConfig, ReLUConfig, JumpReLUConfig)}
        kind = ours.get("kind") if isinstance(ours, dict) else None
        if kind not in kinds:
            raise SAEFormatError(
                f"{file}: metadata.interp.activation.kind {_short(repr(kind), 60)} is not an activation this version knows "
                f"(known: {', '.join(kinds)}); remove metadata.interp to load it by its SAELens architecture"
            )
        try:
            return kinds[kind](**ours)
        except ValidationError as error:
            raise SAEFormatError(f"{file}: metadata.interp.activation is invalid: {_pydantic_problems(error)}") from None
    architecture = cfg.get("architecture")
    if architecture == "topk":
        k = _count(cfg, "k", file)
        if k is None:
            d_sae = cfg.get("d_sae")
            if isinstance(d_sae, int) and 0 < d_sae < SAELENS_DEFAULT_K:
                raise SAEFormatError(
                    f"{file} is a topk SAE without 'k', and SAELens's default k={SAELENS_DEFAULT_K} is larger than "
                    f"d_sae ({d_sae}); add the k it was trained with to the file"
                )
            warnings.warn(
                f"{file} is a topk SAE without 'k'; using SAELens's default k={SAELENS_DEFAULT_K}, "
                "as SAELens does. Check the k it was trained with.",
                stacklevel=3,
            )
            k = SAELENS_DEFAULT_K
        return TopKConfig(k=k)
    if architecture == "standard":
        return ReLUConfig()
    if architecture == "jumprelu":
        return JumpReLUConfig()
    if architecture == "top_afa":
        return TopAFAConfig(k_max=_count(cfg, "k_max", file))
    raise SAEFormatError(
        f"{file}: SAELens architecture {_short(repr(architecture), 60)} is not supported here "
        "(readable: topk, standard, jumprelu including saved batchtopk/matryoshka, top_afa)"
    )


def _pydantic_problems(error: ValidationError) -> str:
    """A pydantic error as ``field: problem; ...`` on one short line (never the whole input)."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
        parts.append(f"{where}: {message}" if where else message)
    return _short("; ".join(parts), 300)


def _sae_config(file: Path, **fields: Any) -> SAEConfig:
    try:
        return SAEConfig(**fields)
    except ValidationError as error:
        raise SAEFormatError(f"{file}: {_pydantic_problems(error)}") from None


def _check_saelens_options(cfg: dict[str, Any], directory: Path) -> None:
    if cfg.get("normalize_activations", "none") not in ("none", "layer_norm"):
        raise SAEFormatError(
            f"{directory}: normalize_activations={cfg['normalize_activations']!r} is applied at run time by SAELens "
            "and is not supported here; fold it into the weights first (SAELens does so at the end of training)"
        )
    if cfg.get("reshape_activations", "none") != "none":
        raise SAEFormatError(f"{directory}: reshape_activations={cfg['reshape_activations']!r} (hook_z SAEs) is not supported")


def _load_saelens(directory: Path) -> SAE:
    cfg = _read_cfg(directory)
    if _is_pre6(cfg):
        cfg = _upgrade_pre6(cfg)
    _check_saelens_options(cfg, directory)
    weights = directory / SAELENS_WEIGHTS
    tensors = _read_tensors(weights)
    if "log_threshold" in tensors:
        tensors["threshold"] = tensors.pop("log_threshold").exp()
    activation = _activation_from_saelens(cfg, directory)
    # SAELens's SAEs all hold W_enc, b_enc, W_dec and b_dec (and a threshold for JumpReLU); a missing
    # one is a broken file, not a zero. Only top-AFA, whose reference has no encoder bias, may omit b_enc.
    required = {"W_enc", "W_dec", "b_dec"}
    if ACTIVATIONS[activation.kind].uses_encoder_bias:
        required.add("b_enc")
    elif "b_enc" not in tensors:
        warnings.warn(f"{weights} has no b_enc; {activation.kind} does not use an encoder bias, so it is left at zero", stacklevel=3)
    if activation.kind in ("jumprelu", "batchtopk"):
        required.add("threshold")
    _require(tensors, required, weights)
    if tensors["W_enc"].ndim != 2:
        raise SAEFormatError(f"{weights}: W_enc has shape {tuple(tensors['W_enc'].shape)}, expected 2 axes [d_in, d_sae]")
    metadata = cfg.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise SAEFormatError(f"{directory / SAELENS_CFG}: metadata must be a JSON object, got {type(metadata).__name__}")
    metadata = dict(metadata)
    metadata.pop("interp", None)
    site = metadata.pop("hook_name", None)
    model = metadata.pop("model_name", None)
    dtype = str(tensors["W_enc"].dtype).removeprefix("torch.")
    file = directory / SAELENS_CFG
    config = _sae_config(
        file,
        d_in=_count(cfg, "d_in", file, tensors["W_enc"].shape[0]),
        d_sae=_count(cfg, "d_sae", file, tensors["W_enc"].shape[1]),
        activation=activation,
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
        normalize_activations=cfg.get("normalize_activations", "none"),
        site=site,
        model=model,
        dtype=dtype,
        metadata={k: v for k, v in metadata.items() if k not in _WRITTEN_BY_DEFAULT or v != _WRITTEN_BY_DEFAULT[k]},
    )
    if cfg.get("rescale_acts_by_decoder_norm"):
        norms = tensors["W_dec"].norm(dim=1).clamp_min(1e-8)
        tensors["W_dec"] = tensors["W_dec"] / norms[:, None]
        tensors["W_enc"] = tensors["W_enc"] * norms[None, :]
        if "b_enc" in tensors:
            tensors["b_enc"] = tensors["b_enc"] * norms
    return _assemble(config, tensors, directory)


def _assemble(config: SAEConfig, tensors: dict[str, Tensor], directory: Path) -> SAE:
    # shapes are checked before the SAE is allocated: a cfg.json with a wrong (huge) d_in or d_sae
    # must be an error, not an attempt to allocate d_in * d_sae numbers
    expected = {"W_enc": (config.d_in, config.d_sae), "W_dec": (config.d_sae, config.d_in), "b_dec": (config.d_in,), "b_enc": (config.d_sae,)}
    for name, shape in expected.items():
        if name in tensors and tuple(tensors[name].shape) != shape:
            raise SAEFormatError(
                f"{directory}: {name} has shape {tuple(tensors[name].shape)}, but cfg.json's d_in={config.d_in}, "
                f"d_sae={config.d_sae} need {shape}; the weights and cfg.json do not belong together"
            )
    stored = tensors.get("threshold")
    if stored is not None and tuple(stored.shape) != (config.d_sae,) and stored.numel() != 1:
        raise SAEFormatError(f"{directory}: threshold has shape {tuple(stored.shape)}, expected ({config.d_sae},)")
    sae = SAE(config)
    with torch.no_grad():
        for name in expected:
            if name in tensors:
                getattr(sae, name).copy_(tensors[name])
        threshold = getattr(sae.activation, "threshold", None)
        if threshold is not None and stored is not None:
            threshold.copy_(stored.reshape(-1)[0] if threshold.ndim == 0 else stored)
    return sae


_BLOCK_OUTPUT = re.compile(r"^(?:model\.|transformer\.|gpt_neox\.)?(?:layers|h)\.(\d+)$")
_EMBED = {"embed_tokens", "wte", "embed_in", "model.embed_tokens", "transformer.wte", "gpt_neox.embed_in"}


def site_of_hookpoint(hookpoint: str) -> str | None:
    """Our site for a sparsify hookpoint (a module path relative to the HF base model), if it is one."""
    match = _BLOCK_OUTPUT.match(hookpoint)
    if match:
        return f"blocks.{match.group(1)}.hook_resid_post"
    if hookpoint in _EMBED:
        return "hook_embed"
    return None


def _load_sparsify(directory: Path) -> SAE:
    cfg = _read_cfg(directory)
    file = directory / SAELENS_CFG
    for flag, why in (("transcode", "it is a transcoder"), ("skip_connection", "it has a skip connection (W_skip)")):
        if cfg.get(flag):
            raise SAEFormatError(f"{directory}: sparsify {flag}=true is not supported: {why}")
    if cfg.get("activation", "topk") != "topk":
        raise SAEFormatError(f"{file}: sparsify activation {_short(repr(cfg['activation']), 60)} is not supported (only topk)")
    k = _count(cfg, "k", file)
    if k is None:
        raise SAEFormatError(f"{file}: a sparsify SAE needs 'k' (latents per token); add it to the file")
    weights = directory / SPARSIFY_WEIGHTS
    tensors = _read_tensors(weights)
    if "W_dec" not in tensors:
        raise SAEFormatError(f"{directory}: an encoder-only sparsify file (no W_dec) cannot reconstruct")
    _require(tensors, {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}, weights)
    if tensors["encoder.weight"].ndim != 2:
        raise SAEFormatError(f"{weights}: encoder.weight has shape {tuple(tensors['encoder.weight'].shape)}, expected [d_sae, d_in]")
    W_enc = tensors["encoder.weight"].t().contiguous()
    d_in, d_sae = W_enc.shape
    for field, size in (("d_in", d_in), ("num_latents", d_sae)):
        stated = _count(cfg, field, file) if cfg.get(field) != 0 else None  # sparsify's num_latents=0: from expansion_factor
        if stated is not None and stated != size:
            raise SAEFormatError(f"{file}: {field}={stated} but encoder.weight has shape {tuple(tensors['encoder.weight'].shape)}; the weights and cfg.json do not belong together")
    run_config = directory.parent / "config.json"
    try:
        run = json.loads(run_config.read_text()) if run_config.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        run = {}
    model = run.get("model") if isinstance(run, dict) else None
    config = _sae_config(
        file,
        d_in=d_in,
        d_sae=d_sae,
        activation=TopKConfig(k=k),
        apply_b_dec_to_input=True,
        site=site_of_hookpoint(directory.name),
        model=model,
        dtype=str(W_enc.dtype).removeprefix("torch."),
        metadata={"hf_hook_name": directory.name, "source_format": "sparsify", "multi_topk": bool(cfg.get("multi_topk", False))},
    )
    weights = {"W_enc": W_enc, "b_enc": tensors["encoder.bias"], "W_dec": tensors["W_dec"], "b_dec": tensors["b_dec"]}
    return _assemble(config, weights, directory)


def export_sparsify(sae: SAE, path: str | Path) -> Path:
    """Write a TopK SAE in sparsify's layout (``cfg.json`` + ``sae.safetensors``) into ``path``.

    sparsify always subtracts ``b_dec`` before encoding and has no run-time normalisation, so SAEs
    without those properties, and activations other than TopK, are refused.
    """
    if sae.activation.inference_k() is None or not sae.config.apply_b_dec_to_input or sae.config.normalize_activations != "none":
        raise SAEFormatError("sparsify can only hold TopK SAEs that subtract b_dec and do not normalise their input")
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        "encoder.weight": sae.W_enc.detach().t().contiguous().cpu(),
        "encoder.bias": sae.b_enc.detach().contiguous().cpu(),
        "W_dec": sae.W_dec.detach().contiguous().cpu(),
        "b_dec": sae.b_dec.detach().contiguous().cpu(),
    }
    save_file(tensors, str(directory / SPARSIFY_WEIGHTS))
    cfg = {
        "activation": "topk",
        "expansion_factor": max(1, sae.d_sae // sae.d_in),
        "normalize_decoder": True,
        "num_latents": sae.d_sae,
        "k": sae.activation.inference_k(),
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": sae.d_in,
    }
    (directory / SAELENS_CFG).write_text(json.dumps(cfg, indent=2))
    return directory
