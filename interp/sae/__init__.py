"""Sparse autoencoders: TopK, BatchTopK, top-AFA, g-SAE and ReLU SAEs, trained, evaluated and browsed.

An SAE splits a site's activations into many sparse, non-negative latents whose decoder directions
are, one hopes, more interpretable than neurons. This package has every piece of the workflow,
one job per module:

* :mod:`~interp.sae.sae` / :mod:`~interp.sae.activations` / :mod:`~interp.sae.kernels`: the
  module (SAELens parameter names), the activation functions, and the sparse decode/encode kernels;
* :mod:`~interp.sae.tokens` / :mod:`~interp.sae.store`: token sources (the demo corpus ships in
  ``interp/sae/corpus``) and the shuffled, resumable, optionally disk-cached activation stream;
* :mod:`~interp.sae.losses` / :mod:`~interp.sae.trainer` / :mod:`~interp.sae.pipeline` /
  :mod:`~interp.sae.config` / :mod:`~interp.sae.cli`: training several SAEs in one pass, from a
  YAML/TOML config, into a run of the results store (``interp sae train CONFIG``);
* :mod:`~interp.sae.metrics` / :mod:`~interp.sae.features`: L0, FVU, dead/dense latents, CE loss
  recovered, the AFA norm check; top contexts, histograms, density and logit effects per latent;
* :mod:`~interp.sae.io` / :mod:`~interp.sae.saelens_plugin`: SAELens's on-disk layout, readers for
  SAELens and sparsify files, and a SAELens plugin for top-AFA;
* :mod:`~interp.sae.splice`: an SAE as an intervention (reconstruction, or with the error term so
  latents can be patched and attributed).

Analysis code needs one call: ``sae = interp.sae.load(path)``; then ``sae.encode(acts)``,
``sae(acts)``, or ``model.run(prompts, interventions=[interp.sae.splice(sae)])``.
"""

from interp.sae.activations import (
    BatchTopKConfig,
    GSAEConfig,
    JumpReLUConfig,
    Latents,
    ReLUConfig,
    TopAFAConfig,
    TopKConfig,
)
from interp.sae.config import TrainConfig
from interp.sae.features import FeatureStats, feature_stats
from interp.sae.io import SAEFormatError, export_sparsify, load, save_sae
from interp.sae.metrics import SAEMetrics, evaluate, reconstruction_metrics
from interp.sae.pipeline import train
from interp.sae.sae import SAE, SAEConfig
from interp.sae.splice import LatentRecord, SAESplice, splice
from interp.sae.store import ActivationStore
from interp.sae.tokens import (
    DemoSource,
    HFDiskSource,
    JsonlSource,
    ParquetSource,
    TextDirSource,
    TextSource,
    TokenFileSource,
    load_tokens,
)
from interp.sae.trainer import OptimConfig, SAETrainer

__all__ = [
    "SAE",
    "ActivationStore",
    "BatchTopKConfig",
    "DemoSource",
    "FeatureStats",
    "GSAEConfig",
    "HFDiskSource",
    "JsonlSource",
    "JumpReLUConfig",
    "LatentRecord",
    "Latents",
    "OptimConfig",
    "ParquetSource",
    "ReLUConfig",
    "SAEConfig",
    "SAEFormatError",
    "SAEMetrics",
    "SAESplice",
    "SAETrainer",
    "TextDirSource",
    "TextSource",
    "TokenFileSource",
    "TopAFAConfig",
    "TopKConfig",
    "TrainConfig",
    "evaluate",
    "export_sparsify",
    "feature_stats",
    "load",
    "load_tokens",
    "reconstruction_metrics",
    "save_sae",
    "splice",
    "train",
]
