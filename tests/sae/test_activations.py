"""Each SAE activation's defining property, and the sparse kernels against dense maths."""

from __future__ import annotations

import pytest
import torch

from interp.sae import SAE, BatchTopKConfig, GSAEConfig, JumpReLUConfig, ReLUConfig, SAEConfig, TopAFAConfig, TopKConfig
from interp.sae.activations import AFA_LAST_CUMSUM
from interp.sae.kernels import dense_decode, sparse_decode, sparse_encode
from interp.sae.losses import sae_loss



def make(activation, d_in: int = 16, d_sae: int = 64, seed: int = 0, **kw) -> SAE:
    sae = SAE.create(SAEConfig(d_in=d_in, d_sae=d_sae, activation=activation, **kw), seed=seed)
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return sae


def test_topk_keeps_exactly_k_relud_largest():
    sae = make(TopKConfig(k=5))
    x = torch.randn(40, 16)
    encoded = sae.encode_detailed(x)
    dense = encoded.latents.dense()
    positive = (encoded.pre > 0).sum(1)
    assert torch.equal((dense != 0).sum(1), positive.clamp(max=5))
    expected = encoded.pre.topk(5, dim=1)
    assert torch.allclose(dense.gather(1, expected.indices), expected.values.relu())


def test_topk_fewer_than_k_positive():
    sae = make(TopKConfig(k=5))
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)
        sae.b_enc[:2] = 100.0
    assert torch.equal(sae.encode(torch.randn(8, 16)).l0(), torch.full((8,), 2.0))


def test_batchtopk_keeps_k_per_token_on_average_and_thresholds_in_eval():
    sae = make(BatchTopKConfig(k=4))
    x = torch.randn(50, 16)
    latents = sae.encode(x)
    counts = latents.l0()
    assert counts.sum() == 4 * 50 and counts.std() > 0  # k*n in total, varying per token
    pre = sae.encode_detailed(x).pre
    assert latents.dense().masked_select(latents.dense() > 0).min() >= pre.relu().flatten().topk(200).values.min() - 1e-6
    sae.activation.update(latents)
    assert sae.activation.threshold > 0
    sae.eval()
    with torch.no_grad():
        sae.activation.threshold.fill_(0.5)
    dense = sae.encode(x).dense()
    assert torch.equal(dense != 0, pre > 0.5)


def _afa_reference(pre: torch.Tensor, x_cent: torch.Tensor, dec_norm: torch.Tensor) -> torch.Tensor:
    """top-AFA as the reference code does it: a full sort, per-row loop, c_h = 1e8."""
    out = torch.zeros_like(pre)
    relu = pre.relu()
    for row in range(pre.shape[0]):
        scores = (relu[row] * dec_norm) ** 2
        order = torch.argsort(scores, descending=True)
        cumulative = torch.cumsum(scores[order], 0)
        cumulative[-1] = AFA_LAST_CUMSUM
        k_star = int(torch.argmin((cumulative.sqrt() - x_cent[row].norm()).abs())) + 1
        out[row, order[:k_star]] = relu[row, order[:k_star]]
    return out


def test_top_afa_count_follows_the_norm_rule():
    sae = make(TopAFAConfig(k_max=None))
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(64, 1, generator=torch.Generator().manual_seed(3)) + 0.5)  # non-unit rows
    x = torch.randn(30, 16) * 2
    encoded = sae.encode_detailed(x)
    expected = _afa_reference(encoded.pre, encoded.x_cent, sae.W_dec.norm(dim=1))
    assert torch.allclose(encoded.latents.dense(), expected)
    assert (encoded.latents.l0() >= 1).all() and encoded.latents.l0().std() > 0


def test_top_afa_exact_recovery_on_orthonormal_dictionary():
    d = 16
    sae = make(TopAFAConfig(k_max=None), d_in=d, d_sae=d)
    basis = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(0)))[0]
    with torch.no_grad():
        sae.W_dec.copy_(basis)
        sae.W_enc.copy_(basis.t())
    support = [1, 5, 9]
    coefficients = torch.tensor([3.0, 2.0, 0.5])
    x = sae.b_dec.detach() + coefficients @ basis[support]
    latents = sae.encode(x.unsqueeze(0))
    assert latents.l0().item() == len(support)
    assert torch.allclose(latents.dense()[0, support], coefficients, atol=1e-5)
    assert torch.allclose(sae(x.unsqueeze(0))[0], x, atol=1e-5)
    topk = make(TopKConfig(k=3), d_in=d, d_sae=d)
    topk.load_state_dict(sae.state_dict())
    assert torch.allclose(topk.encode(x.unsqueeze(0)).dense(), latents.dense(), atol=1e-6)


def test_top_afa_edge_cases_and_batch_independence():
    sae = make(TopAFAConfig(k_max=None))
    with torch.no_grad():
        sae.W_enc.zero_()
    zero = sae.encode_detailed(torch.randn(4, 16))
    assert torch.equal(zero.latents.l0(), torch.zeros(4))  # k* = 1 but the kept value is 0
    sae = make(TopAFAConfig(k_max=None))
    x = torch.randn(12, 16)
    together = sae.encode(x).dense()
    alone = torch.cat([sae.encode(x[i : i + 1]).dense() for i in range(12)])
    assert torch.allclose(together, alone)
    capped = make(TopAFAConfig(k_max=3))
    assert capped.encode(x * 50).l0().max() <= 3


def test_gsae_uses_gradients_only_for_selection():
    sae = make(GSAEConfig(k=3, beta=0.0))
    topk = make(TopKConfig(k=3))
    topk.load_state_dict(sae.state_dict())
    x, grad = torch.randn(20, 16), torch.randn(20, 16)
    assert torch.equal(sae.encode(x, grad).dense(), topk.encode(x).dense())  # beta = 0
    sae = make(GSAEConfig(k=3, beta=5.0))
    topk.load_state_dict(sae.state_dict())
    assert torch.equal(sae.encode(x).dense(), topk.encode(x).dense())  # no gradient: plain TopK
    encoded = sae.encode_detailed(x[:1])
    z = encoded.pre.relu()[0]
    ranked = z.argsort(descending=True)
    small = int(ranked[10])  # active but far from the top 3
    assert z[small] > 0
    g = sae.W_dec[small].detach().unsqueeze(0) * 1000  # the loss changes fast along latent `small`
    chosen = sae.encode(x[:1], g).dense()[0]
    assert chosen[small] == z[small]  # selected, and its value is z, not re-weighted
    assert torch.equal((chosen != 0).sum(), torch.tensor(3))


def test_relu_l1_gradient():
    sae = make(ReLUConfig(l1_coeff=0.5))
    x = torch.randn(32, 16)
    out = sae_loss(sae, x)
    (grad_b,) = torch.autograd.grad(out.l1, sae.b_enc)
    encoded = sae.encode_detailed(x)
    target = encoded.x_in
    rms = ((target - target.mean(0)).pow(2).sum() / 32).sqrt()
    active = (encoded.pre > 0).sum(0).float()
    assert torch.allclose(grad_b, active * sae.W_dec.norm(dim=1).detach() / (32 * rms), atol=1e-6)
    assert torch.allclose(out.loss, out.fvu + 0.5 * out.l1)


def test_jumprelu_threshold():
    sae = make(JumpReLUConfig())
    with torch.no_grad():
        sae.activation.threshold.uniform_(0, 1)
    encoded = sae.encode_detailed(torch.randn(10, 16))
    expected = encoded.pre.relu() * (encoded.pre > sae.activation.threshold)
    assert torch.allclose(encoded.latents.dense(), expected)


def test_sparse_decode_equals_dense_forward_and_backward():
    torch.manual_seed(0)
    W = torch.randn(300, 24, dtype=torch.float64, requires_grad=True)
    values = torch.rand(50, 7, dtype=torch.float64, requires_grad=True)
    indices = torch.randint(0, 300, (50, 7))
    upstream = torch.randn(50, 24, dtype=torch.float64)
    sparse = sparse_decode(values, indices, W)
    g_sparse = torch.autograd.grad((sparse * upstream).sum(), [values, W])
    dense = dense_decode(values, indices, W)
    g_dense = torch.autograd.grad((dense * upstream).sum(), [values, W])
    assert torch.allclose(sparse, dense)
    for a, b in zip(g_sparse, g_dense, strict=True):
        assert torch.allclose(a, b)


def test_sparse_encode_gradients_match_autograd():
    torch.manual_seed(1)
    x = torch.randn(40, 12, dtype=torch.float64, requires_grad=True)
    W = torch.randn(12, 90, dtype=torch.float64, requires_grad=True)
    b = torch.randn(90, dtype=torch.float64, requires_grad=True)
    pre = (x @ W + b).detach()
    indices = pre.topk(6, dim=1).indices
    upstream = torch.randn(40, 6, dtype=torch.float64)
    ours = sparse_encode(x, W, b, pre, indices)
    g_ours = torch.autograd.grad((ours * upstream).sum(), [x, W, b])
    reference = (x @ W + b).gather(1, indices)
    g_ref = torch.autograd.grad((reference * upstream).sum(), [x, W, b])
    assert torch.allclose(ours, reference)
    for a, b_ in zip(g_ours, g_ref, strict=True):
        assert torch.allclose(a, b_)


@pytest.mark.parametrize("target", ["centred", "input"])
def test_afa_loss_matches_latent_norm_to_the_chosen_target(target: str):
    sae = make(TopAFAConfig(k_max=8, afa_coeff=0.5, afa_target=target))
    x = torch.randn(32, 16) * 3
    out = sae_loss(sae, x)
    encoded = sae.encode_detailed(x)
    z = encoded.x_cent if target == "centred" else x
    variance = (x - x.mean(0)).pow(2).sum() / x.numel()
    expected = (encoded.latents.values.norm(dim=1) - z.norm(dim=1)).pow(2).mean() / variance
    assert torch.allclose(out.afa, expected)
    assert torch.allclose(out.loss, out.fvu + 0.5 * out.afa)
