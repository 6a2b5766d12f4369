"""A synthetic layer with a planted concept direction, shared by the concept tests.

Activations are standard normal in ``d`` dimensions; concept examples are shifted by ``shift``
along a unit direction ``w``; the target metric's gradient at every example is ``w`` plus noise, so
moving toward the concept raises the metric and the true TCAV score of the concept is near 1.
"""

from __future__ import annotations

import torch

from interp.concepts import ConceptSet, Sensitivities, analyse
from interp.concepts.experiment import n_random_sets


def planted(seed: int, d: int = 24, n: int = 60, n_random: int = 10, shift: float = 3.0, noise: float = 0.7,
            concept_shift: float | None = None, classifier: str = "mean_diff", n_permutations: int = 200,
            design: str = "disjoint"):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=gen, dtype=torch.float64)
    w = w / w.norm()
    m = n // n_random if design == "disjoint" else n
    sets = [ConceptSet(f"random_{i}", [f"r{i}-{j}" for j in range(m)]) for i in range(n_random_sets(design, n_random))]
    concept = ConceptSet("concept", [f"c-{j}" for j in range(n)])
    blocks = {s.name: torch.randn(1, m, d, generator=gen, dtype=torch.float64) for s in sets}
    move = shift if concept_shift is None else concept_shift
    blocks["concept"] = torch.randn(1, n, d, generator=gen, dtype=torch.float64) + move * w
    grads = w + noise * torch.randn(1, 40, d, generator=gen, dtype=torch.float64)
    sens = Sensitivities("resid_post", (0,), grads, torch.zeros(40))
    result = analyse(blocks, [concept], sets, sens, classifier=classifier, n_permutations=n_permutations, seed=seed,
                     design=design)
    return w, result
