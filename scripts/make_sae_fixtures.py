"""Write the tiny SAE fixtures of tests/fixtures/sae/ with the REAL sae-lens and sparsify packages.

sae-lens pins transformer-lens < 4, so it cannot share the workbench's environment; run this script
in a separate virtual environment (the fixtures are committed, so this is only needed to remake them)::

    python -m venv /tmp/saelens-venv
    /tmp/saelens-venv/bin/pip install torch==2.13.0        # first, so pip keeps the CPU build
    /tmp/saelens-venv/bin/pip install sae-lens eai-sparsify
    /tmp/saelens-venv/bin/python scripts/make_sae_fixtures.py tests/fixtures/sae

Each fixture is a directory the package itself wrote (SAELens ``save_model`` /
``save_inference_model``, sparsify ``SparseCoder.save_to_disk``) plus ``expected.safetensors``:
a fixed input ``x`` and the package's own latents and reconstruction of it, which
``tests/sae/test_io.py`` compares with ours. Sizes are tiny (d_in 16, d_sae 64) to keep the
fixtures a few kilobytes. This script imports only torch, safetensors, sae_lens and sparsify.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

D_IN, D_SAE, K, N = 16, 64, 6, 32


def _randomise(module: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def _expected(directory: Path, x: torch.Tensor, latents: torch.Tensor, recon: torch.Tensor) -> None:
    save_file(
        {"x": x.contiguous(), "latents": latents.detach().contiguous(), "recon": recon.detach().contiguous()},
        str(directory / "expected.safetensors"),
    )


def saelens_fixtures(root: Path, x: torch.Tensor) -> None:
    import sae_lens
    from sae_lens import (
        BatchTopKTrainingSAEConfig,
        JumpReLUSAEConfig,
        StandardSAEConfig,
        TopKSAEConfig,
        TopKTrainingSAEConfig,
    )
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE
    from sae_lens.saes.sae import SAE, SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE
    from sae_lens.saes.topk_sae import TopKSAE, TopKTrainingSAE

    def meta() -> SAEMetadata:
        return SAEMetadata(model_name="tiny-llama", hook_name="blocks.1.hook_resid_post", context_size=16, prepend_bos=False)

    # Inference TopK SAE, saved with save_model.
    topk = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, metadata=meta()))
    _randomise(topk, 1)
    topk.save_model(root / "saelens_topk")

    # Training TopK SAE with rescale_acts_by_decoder_norm (SAELens's training default), saved for inference.
    topk_train = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=True, metadata=meta()))
    _randomise(topk_train, 2)
    topk_train.save_inference_model(root / "saelens_topk_rescaled")

    standard = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=meta()))
    _randomise(standard, 3)
    standard.save_model(root / "saelens_standard")

    jumprelu = JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=meta()))
    _randomise(jumprelu, 4)
    with torch.no_grad():
        jumprelu.threshold.copy_(torch.rand(D_SAE, generator=torch.Generator().manual_seed(5)) * 0.5)
    jumprelu.save_model(root / "saelens_jumprelu")

    batchtopk = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, rescale_acts_by_decoder_norm=False, metadata=meta()))
    _randomise(batchtopk, 6)
    with torch.no_grad():
        batchtopk.topk_threshold.fill_(0.4)
    batchtopk.save_inference_model(root / "saelens_batchtopk")

    for name in ("saelens_topk", "saelens_topk_rescaled", "saelens_standard", "saelens_jumprelu", "saelens_batchtopk"):
        loaded = SAE.load_from_disk(root / name)
        latents = loaded.encode(x)
        _expected(root / name, x, latents, loaded.decode(latents))
    (root / "saelens_version.json").write_text(json.dumps({"sae_lens": sae_lens.__version__, "torch": torch.__version__}))


def sparsify_fixtures(root: Path, x: torch.Tensor) -> None:
    from importlib.metadata import version

    from sparsify import SparseCoder, SparseCoderConfig

    run = root / "sparsify_run"
    coder = SparseCoder(D_IN, SparseCoderConfig(k=K, num_latents=D_SAE))
    _randomise(coder, 7)
    coder.set_decoder_norm_to_unit_norm()
    coder.save_to_disk(run / "layers.1")
    (run / "config.json").write_text(json.dumps({"model": "tiny-llama", "ctx_len": 16}))
    loaded = SparseCoder.load_from_disk(run / "layers.1")
    top_acts, top_indices, _ = loaded.encode(x)
    dense = torch.zeros(x.shape[0], D_SAE).scatter_add(1, top_indices, top_acts)
    _expected(run / "layers.1", x, dense, loaded.decode(top_acts, top_indices))
    (root / "sparsify_version.json").write_text(json.dumps({"eai-sparsify": version("eai-sparsify"), "torch": torch.__version__}))


def main(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    x = torch.randn(N, D_IN, generator=torch.Generator().manual_seed(0))
    saelens_fixtures(root, x)
    sparsify_fixtures(root, x)
    print(f"fixtures written to {root}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/sae"))
