"""Prove that SAELens loads the SAEs we save: write them here, load them with the real sae-lens.

Two halves, because sae-lens (transformer-lens < 4) cannot share the workbench's environment:

1. in the workbench's environment, save one SAE per architecture (TopK, g-SAE, BatchTopK, ReLU,
   top-AFA, top-AFA with layer_norm input) with random weights, plus an input ``x`` and *our*
   latents and reconstruction of it;
2. with the sae-lens environment's Python (``--saelens-python``), load each directory with
   ``sae_lens.SAE.load_from_disk`` (top-AFA through ``interp/sae/saelens_plugin.py``, loaded by file
   path) and compare SAELens's latents and reconstruction with ours.

Usage (after making the venv as in ``scripts/make_sae_fixtures.py``)::

    python scripts/sae_lens_interop.py --saelens-python /tmp/saelens-venv/bin/python

It prints one line per SAE (the class SAELens built, k, hook name, max differences relative to the
largest value) and exits non-zero if any differs by more than 1e-5. Running the check half alone:
``/tmp/saelens-venv/bin/python scripts/sae_lens_interop.py --check DIR``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

TOLERANCE = 1e-5
PLUGIN = Path(__file__).resolve().parents[1] / "interp" / "sae" / "saelens_plugin.py"


def write_ours(root: Path) -> None:
    from interp.sae.activations import BatchTopKConfig, GSAEConfig, ReLUConfig, TopAFAConfig, TopKConfig
    from interp.sae.io import save_sae
    from interp.sae.sae import SAE, SAEConfig

    specs = {
        "topk": (TopKConfig(k=8), "none"),
        "gsae": (GSAEConfig(k=8, beta=2.0), "none"),
        "batchtopk": (BatchTopKConfig(k=8), "none"),
        "relu": (ReLUConfig(), "none"),
        "top_afa": (TopAFAConfig(k_max=None), "none"),
        "top_afa_capped_layernorm": (TopAFAConfig(k_max=12), "layer_norm"),
    }
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)) * 3
    for index, (name, (activation, normalize)) in enumerate(specs.items()):
        config = SAEConfig(
            d_in=32, d_sae=128, activation=activation, normalize_activations=normalize,
            site="blocks.15.hook_resid_post", model="smollm2-135m",
            metadata={"context_size": 128, "prepend_bos": False, "hf_hook_name": "model.layers.15"},
        )
        sae = SAE.create(config, seed=index)
        with torch.no_grad():
            sae.b_dec.normal_(generator=torch.Generator().manual_seed(100 + index))
            if sae.activation.uses_encoder_bias:
                sae.b_enc.normal_(std=0.1, generator=torch.Generator().manual_seed(200 + index))
            if name == "batchtopk":
                sae.activation.threshold.fill_(0.3)
        sae.eval()
        save_sae(sae, root / name)
        encoded = sae.encode_detailed(x)
        save_file(
            {"x": x, "latents": encoded.latents.dense().detach().contiguous(), "recon": sae(x).detach().contiguous()},
            str(root / name / "expected.safetensors"),
        )


def check(root: Path) -> int:
    import sae_lens
    from sae_lens import SAE

    spec = importlib.util.spec_from_file_location("interp_saelens_plugin", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    failures = 0
    print(f"sae-lens {sae_lens.__version__}")
    for directory in sorted(p for p in root.iterdir() if (p / "cfg.json").is_file()):
        sae = SAE.load_from_disk(str(directory))
        expected = load_file(str(directory / "expected.safetensors"))
        with torch.no_grad():
            latents = sae.encode(expected["x"])
            recon = sae.decode(latents)
        d_lat = (latents - expected["latents"]).abs().max().item() / max(1.0, expected["latents"].abs().max().item())
        d_rec = (recon - expected["recon"]).abs().max().item() / max(1.0, expected["recon"].abs().max().item())
        ok = d_lat <= TOLERANCE and d_rec <= TOLERANCE
        failures += not ok
        k = getattr(sae.cfg, "k", getattr(sae.cfg, "k_max", None))
        print(
            f"{'OK  ' if ok else 'FAIL'} {directory.name:26s} {type(sae).__name__:12s} k={k} "
            f"hook={sae.cfg.metadata.hook_name} rel|dlatents|={d_lat:.1e} rel|drecon|={d_rec:.1e}"
        )
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saelens-python", default="/tmp/saelens-venv/bin/python")
    parser.add_argument("--check", type=Path, help="only load and compare the SAEs in this directory (sae-lens env)")
    args = parser.parse_args()
    if args.check is not None:
        sys.exit(1 if check(args.check) else 0)
    with tempfile.TemporaryDirectory() as tmp:
        write_ours(Path(tmp))
        result = subprocess.run([args.saelens_python, __file__, "--check", tmp], check=False)
        manifest = sorted(p.name for p in Path(tmp).iterdir())
        print(json.dumps({"saved": manifest, "returncode": result.returncode}))
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
