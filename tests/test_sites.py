"""The site vocabulary: every family lists the right sites, and bad names fail helpfully."""

from __future__ import annotations

import pytest

import interp
from interp.sites import parse_site, site_name


def test_site_name_builds_tl_names() -> None:
    assert site_name("resid_pre", 3) == "blocks.3.hook_resid_pre"
    assert site_name("z", 0) == "blocks.0.attn.hook_z"
    assert site_name("post", 2) == "blocks.2.mlp.hook_post"
    assert site_name("logits") == "logits"
    with pytest.raises(interp.UnknownSiteError, match="pass a layer"):
        site_name("resid_pre")
    with pytest.raises(interp.UnknownSiteError, match="did you mean"):
        site_name("resid_pree", 1)


def test_parse_site_axes() -> None:
    site = parse_site("blocks.2.attn.hook_pattern")
    assert site is not None and site.kind == "pattern" and site.layer == 2
    assert site.head_axis == 1 and site.pos_axis == 2
    z = parse_site("blocks.1.attn.hook_z")
    assert z is not None and z.head_axis == 2 and z.pos_axis == 1
    assert parse_site("blocks.1.hook_nonsense") is None


def test_every_family_lists_all_sites_in_forward_order(tiny: interp.Model) -> None:
    sites = tiny.sites
    n = tiny.dims.n_layers
    assert sites[0] == "hook_embed" and sites[-2:] == ["ln_final.hook_normalized", "logits"]
    for layer in range(n):
        for kind in ("resid_pre", "q", "k", "v", "pattern", "z", "attn_out", "mlp_pre", "mlp_post", "mlp_out", "resid_post"):
            assert site_name(kind, layer) in sites
    assert ("hook_pos_embed" in sites) == (tiny.arch.family == "gpt2")
    assert ("blocks.0.mlp.hook_pre_linear" in sites) == tiny.arch.gated_mlp
    assert ("blocks.0.hook_resid_mid" in sites) == (not tiny.arch.parallel_residual)
    assert sites.index("blocks.0.hook_resid_pre") < sites.index("blocks.0.attn.hook_z") < sites.index("blocks.0.hook_resid_post")


def test_unknown_site_suggests_nearest(tiny: interp.Model) -> None:
    with pytest.raises(interp.UnknownSiteError, match="blocks.0.hook_resid_pre"):
        tiny.run_with_cache("Mary", sites=["blocks.0.hook_resid_pr"])
    with pytest.raises(interp.UnknownSiteError, match=r"has 3 layers \(0\.\.2\)"):
        tiny.run_with_cache("Mary", sites=["blocks.7.hook_resid_pre"])


def test_parallel_residual_has_no_resid_mid() -> None:
    model = interp.load_model("tiny-neox")
    with pytest.raises(interp.UnknownSiteError, match="no 'resid_mid' site"):
        model.site("blocks.0.hook_resid_mid")
