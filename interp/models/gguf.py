"""GGUF files as ordinary Hugging Face checkpoints, converted once and cached.

transformers can read a GGUF file (it dequantises every tensor to float, about 20-30 s for
SmolLM2-135M on this CPU) but refuses ``save_pretrained`` on the result. So we write the cache
ourselves: ``model.safetensors`` (tied weights stored once), a clean ``config.json`` without the
GGUF quantisation entry, the tokenizer files, and last ``interp_cache.json`` holding the source
file's identity, the SHA-256 of every file and the GGUF metadata the checkpoint files cannot carry
(``tokenizer.ggml.add_bos_token``: transformers' tokenizer from a GGUF file reports no BOS even where
the file asks for one). The cache is built in a temporary directory and
renamed into place, so a crash leaves no half-written cache; a cache whose hashes do not match
(corrupt, truncated, or from another source) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp.errors import ModelLoadError

CACHE_FORMAT = 1
MARKER = "interp_cache.json"
ADD_BOS_KEY = "tokenizer.ggml.add_bos_token"


def default_cache_root() -> Path:
    """``$INTERP_CACHE_DIR`` or ``~/.cache/interp``."""
    return Path(os.environ.get("INTERP_CACHE_DIR", Path.home() / ".cache" / "interp"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_identity(gguf: Path) -> dict[str, object]:
    """What identifies a GGUF source: its name, size and modification time."""
    stat = gguf.stat()
    return {"file": gguf.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "format": CACHE_FORMAT}


def cache_is_valid(directory: Path, gguf: Path) -> bool:
    """True if ``directory`` holds a complete conversion of ``gguf`` whose files match their hashes."""
    marker = directory / MARKER
    if not marker.is_file():
        return False
    try:
        record = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if record.get("source") != source_identity(gguf):
        return False
    files = record.get("files", {})
    return bool(files) and all(
        (directory / name).is_file() and _sha256(directory / name) == digest for name, digest in files.items()
    )


def read_add_bos_token(gguf: Path) -> bool | None:
    """The file's ``tokenizer.ggml.add_bos_token`` metadata (None when the file does not set it)."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get(ADD_BOS_KEY)
    return None if field is None else bool(field.contents())


def cached_add_bos_token(directory: Path, gguf: Path) -> bool | None:
    """The ``add_bos_token`` metadata recorded in a valid cache of ``gguf``.

    A cache written before the field existed is read from ``gguf`` once and the marker rewritten
    (atomically; the marker is not among the hashed files).
    """
    marker = directory / MARKER
    record = json.loads(marker.read_text())
    if ADD_BOS_KEY not in record:
        record[ADD_BOS_KEY] = read_add_bos_token(gguf)
        staging = marker.with_name(f"{MARKER}.tmp-{os.getpid()}")
        staging.write_text(json.dumps(record, indent=2))
        staging.replace(marker)
    value = record[ADD_BOS_KEY]
    return None if value is None else bool(value)


def convert(gguf: Path, directory: Path) -> None:
    """Convert ``gguf`` into a Hugging Face checkpoint at ``directory`` (atomically)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp-", dir=directory.parent))
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        save_file(state, str(staging / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        for key in ("quantization_config", "_name_or_path", "transformers_version"):
            config.pop(key, None)
        config["architectures"] = [type(model).__name__]
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(str(staging))
        files = {p.name: _sha256(p) for p in sorted(staging.iterdir()) if p.is_file()}
        record = {"source": source_identity(gguf), "files": files, ADD_BOS_KEY: read_add_bos_token(gguf)}
        (staging / MARKER).write_text(json.dumps(record, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def cached_checkpoint(gguf: Path, cache_dir: Path | None = None) -> Path:
    """A valid converted checkpoint for ``gguf``, converting (or rebuilding) it if needed."""
    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file {gguf} does not exist")
    root = cache_dir if cache_dir is not None else default_cache_root() / "models"
    directory = Path(root) / gguf.stem
    if not cache_is_valid(directory, gguf):
        convert(gguf, directory)
    return directory
