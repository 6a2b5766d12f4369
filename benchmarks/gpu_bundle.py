"""Pack what an offline GPU machine needs to run ``benchmarks/gpu.py``: wheels, the default model, the corpus.

A GPU machine lent without network access has PyTorch, transformers and the scientific stack, but
not the workbench's other dependencies, not the comparison tools, and no model weights; and what
travels to it is capped per transfer (``--limit-mib``, counting the repository's tracked files that
travel each time). The default model alone (a 94 MiB GGUF file) is larger than one transfer, and
SAELens brings wandb (20 MiB), so this script packs three loads, each under the cap, into ``.gpu/``
(git-ignored):

* ``.gpu/a/``: ``whl/``, the wheels the workbench, gpu.py's comparisons and the test pass need
  there (pinned to the versions installed here, built for the GPU machine's Python,
  ``--python-version``), and ``model.0``, the first part of the GGUF file;
* ``.gpu/b/``: ``model.1``, the rest of it, with ``model.sha256``, and ``tokens.npy.xz``, the token
  corpus (``benchmarks/build_corpus.py``) compressed with xz;
* ``.gpu/c/``: ``saelens_whl/``, sae-lens with the transformer-lens < 4 and the wandb it imports,
  installed there into a site directory of their own.

``benchmarks/gpu_device.sh`` runs on the GPU machine, one stage per transfer (``docs/scale.md``):
``tests`` with ``.gpu/a`` (the CUDA test pass, no model needed), ``measure`` with ``.gpu/b`` (the
model joined and checked, the corpus unpacked; every measurement but SAELens's, then the slow
tests), ``sae`` with ``.gpu/c`` (SAE training, ours against SAELens). Each load stays on the machine
for the next stages while it is held.

Usage::

    python benchmarks/gpu_bundle.py [--corpus data/corpus/tokens.npy] [--python-version 3.12]

It prints each load's size with the tracked files counted in, and fails if one is over the cap.
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 1 << 20
# What a CUDA image with PyTorch, transformers, pandas, pyarrow, scipy, scikit-learn, typer and rich
# lacks, for the workbench itself, gpu.py's comparisons and the test pass. Pinned to this machine's
# versions, so the GPU machine runs what was tested here.
MAIN_WHEELS = [
    "pydantic", "pydantic-core", "annotated-types", "typing-inspection",  # configs
    "gguf",  # reading the default model's GGUF file
    "transformer-lens", "beartype", "fancy-einsum", "typeguard", "datasets", "dill", "multiprocess",  # TL 4
    "captum",  # TCAV comparison
    "steering-vectors", "repeng",  # steering comparisons
    "nnsight", "greenlet", "websocket-client",  # the nnsight backend's tests
]
# sae-lens pins transformer-lens < 4: it gets a site directory of its own, put first on its path;
# its trainer imports wandb at module level.
SAELENS_WHEELS = ["sae-lens==6.54.12", "transformer-lens==3.9.0", "better-abc", "simple-parsing", "docstring-parser",
                  "wandb", "cwevals", "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http",
                  "opentelemetry-exporter-otlp-proto-common", "opentelemetry-proto", "opentelemetry-semantic-conventions",
                  "platformdirs"]
MANYLINUX = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def pinned(name: str) -> str:
    """``name==version`` of what is installed here, or the bare name (pip's newest) if it is not."""
    if "==" in name:
        return name
    try:
        return f"{name}=={version(name)}"
    except PackageNotFoundError:
        return name


def download(requirements: list[str], into: Path, python_version: str) -> None:
    into.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", "-d", str(into)]
    for platform in MANYLINUX:
        command += ["--platform", platform]
    done = subprocess.run(command + requirements, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pip download failed for {requirements}:\n{done.stderr.strip()}")


def tracked_bytes() -> int:
    """Bytes of the files that travel with every load: tracked ones and untracked ones git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum((ROOT / name.decode()).stat().st_size for name in names if name and (ROOT / name.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu")
    parser.add_argument("--corpus", type=Path, default=ROOT / "data/corpus/tokens.npy")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (wheels are built per version)")
    parser.add_argument("--limit-mib", type=float, default=64.0, help="the most one transfer may carry")
    args = parser.parse_args()
    from interp.models import smollm2_gguf

    if not args.corpus.is_file():
        raise SystemExit(f"no token file {args.corpus}; build it with benchmarks/build_corpus.py")
    if args.out.exists():
        shutil.rmtree(args.out)
    loads = {name: args.out / name for name in "abc"}
    download([pinned(name) for name in MAIN_WHEELS], loads["a"] / "whl", args.python_version)
    download([pinned(name) for name in SAELENS_WHEELS], loads["c"] / "saelens_whl", args.python_version)
    loads["b"].mkdir()
    (loads["b"] / "tokens.npy.xz").write_bytes(lzma.compress(args.corpus.read_bytes(), preset=6))

    model = smollm2_gguf().read_bytes()
    (loads["b"] / "model.sha256").write_text(hashlib.sha256(model).hexdigest() + "\n")
    shared, limit = tracked_bytes(), int(args.limit_mib * MIB)
    room = {name: limit - shared - folder_bytes(load) - MIB for name, load in loads.items()}  # a MiB to spare
    if min(room.values()) <= 0 or room["a"] + room["b"] < len(model):
        raise SystemExit(f"the model ({len(model) / MIB:.1f} MiB) does not fit beside the wheels and the corpus in "
                         f"loads of {args.limit_mib:g} MiB ({shared / MIB:.1f} MiB of tracked files in each): "
                         "carry fewer corpus tokens (build_corpus.py --max-tokens)")
    split = min(room["a"], len(model))
    (loads["a"] / "model.0").write_bytes(model[:split])
    (loads["b"] / "model.1").write_bytes(model[split:])
    for load in loads.values():
        size = folder_bytes(load)
        print(f".gpu/{load.name}: {size / MIB:.1f} MiB + {shared / MIB:.1f} MiB tracked = "
              f"{(size + shared) / MIB:.1f} MiB of {args.limit_mib:g}")

if __name__ == "__main__":
    main()
