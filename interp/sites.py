"""The site vocabulary: one name for each place in a model where activations can be read or written.

Sites use TransformerLens's names, which the field already knows. A *site* is a tensor of the
forward pass, addressed by a string such as ``blocks.3.attn.hook_z``:

===============================  ==============  ===========================================
site                             axes            meaning
===============================  ==============  ===========================================
``hook_embed``                   batch pos d     token embedding
``hook_pos_embed``               batch pos d     learned position embedding (GPT-2 only)
``blocks.L.hook_resid_pre``      batch pos d     residual stream entering block L
``blocks.L.attn.hook_q/k/v``     batch pos h dh  per-head projections (k, v: KV heads on GQA)
``blocks.L.attn.hook_pattern``   batch h q k     attention probabilities (needs eager attention)
``blocks.L.attn.hook_z``         batch pos h dh  per-head attention output before W_O
``blocks.L.hook_attn_out``       batch pos d     what attention adds to the residual stream
``blocks.L.hook_resid_mid``      batch pos d     residual stream after attention
``blocks.L.mlp.hook_pre``        batch pos m     MLP pre-activation (gated MLPs: the gate)
``blocks.L.mlp.hook_pre_linear`` batch pos m     up projection of a gated MLP
``blocks.L.mlp.hook_post``       batch pos m     MLP neurons after the nonlinearity
``blocks.L.hook_mlp_out``        batch pos d     what the MLP adds to the residual stream
``blocks.L.hook_resid_post``     batch pos d     residual stream leaving block L
``ln_final.hook_normalized``     batch pos d     final norm output
``logits``                       batch pos vocab output logits
===============================  ==============  ===========================================

Which sites exist depends on the architecture (``hook_pos_embed`` only with learned positions,
``hook_pre_linear`` only with gated MLPs, ``hook_resid_mid`` not on parallel-residual blocks); a
model's :attr:`interp.Model.sites` lists exactly the ones it has, in forward order. Asking for any
other name raises :class:`~interp.errors.UnknownSiteError` with the nearest valid names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from interp.errors import UnknownSiteError

# kind -> (name template, axes). Order is forward order inside a block.
GLOBAL_BEFORE: dict[str, tuple[str, tuple[str, ...]]] = {
    "embed": ("hook_embed", ("batch", "pos", "d_model")),
    "pos_embed": ("hook_pos_embed", ("batch", "pos", "d_model")),
}
BLOCK: dict[str, tuple[str, tuple[str, ...]]] = {
    "resid_pre": ("blocks.{L}.hook_resid_pre", ("batch", "pos", "d_model")),
    "q": ("blocks.{L}.attn.hook_q", ("batch", "pos", "head", "d_head")),
    "k": ("blocks.{L}.attn.hook_k", ("batch", "pos", "head", "d_head")),
    "v": ("blocks.{L}.attn.hook_v", ("batch", "pos", "head", "d_head")),
    "pattern": ("blocks.{L}.attn.hook_pattern", ("batch", "head", "query_pos", "key_pos")),
    "z": ("blocks.{L}.attn.hook_z", ("batch", "pos", "head", "d_head")),
    "attn_out": ("blocks.{L}.hook_attn_out", ("batch", "pos", "d_model")),
    "resid_mid": ("blocks.{L}.hook_resid_mid", ("batch", "pos", "d_model")),
    "mlp_pre": ("blocks.{L}.mlp.hook_pre", ("batch", "pos", "d_mlp")),
    "mlp_pre_linear": ("blocks.{L}.mlp.hook_pre_linear", ("batch", "pos", "d_mlp")),
    "mlp_post": ("blocks.{L}.mlp.hook_post", ("batch", "pos", "d_mlp")),
    "mlp_out": ("blocks.{L}.hook_mlp_out", ("batch", "pos", "d_model")),
    "resid_post": ("blocks.{L}.hook_resid_post", ("batch", "pos", "d_model")),
}
GLOBAL_AFTER: dict[str, tuple[str, tuple[str, ...]]] = {
    "normalized": ("ln_final.hook_normalized", ("batch", "pos", "d_model")),
    "logits": ("logits", ("batch", "pos", "d_vocab")),
}
ALL_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {**GLOBAL_BEFORE, **BLOCK, **GLOBAL_AFTER}

# Short names people type (TransformerLens's get_act_name accepts these too).
ALIASES = {
    "pre": "mlp_pre",
    "pre_linear": "mlp_pre_linear",
    "post": "mlp_post",
    "attn": "pattern",
    "ln_final": "normalized",
}

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")
_BLOCK_SUFFIX = {template.split("{L}.")[1]: kind for kind, (template, _) in BLOCK.items()}
_GLOBAL = {template: kind for kind, (template, _) in {**GLOBAL_BEFORE, **GLOBAL_AFTER}.items()}


@dataclass(frozen=True)
class Site:
    """One parsed site: its full name, its kind (e.g. ``"resid_pre"``) and its layer (or None)."""

    name: str
    kind: str
    layer: int | None

    @property
    def axes(self) -> tuple[str, ...]:
        """Axis names of the site's tensor, batch first."""
        return ALL_KINDS[self.kind][1]

    @property
    def pos_axis(self) -> int:
        """The axis that ``positions`` selectors index (the query axis for attention patterns)."""
        return 2 if self.kind == "pattern" else 1

    @property
    def head_axis(self) -> int | None:
        """The axis that ``heads`` selectors index, or None for sites without a head axis."""
        if "head" not in self.axes:
            return None
        return self.axes.index("head")

    def __str__(self) -> str:
        return self.name


def site_name(kind: str, layer: int | None = None) -> str:
    """Build a site name from a kind and a layer: ``site_name("resid_pre", 3)``."""
    kind = ALIASES.get(kind, kind)
    if kind not in ALL_KINDS:
        close = difflib.get_close_matches(kind, list(ALL_KINDS) + list(ALIASES), n=3)
        raise UnknownSiteError(f"unknown site kind {kind!r}; did you mean {close}? Kinds: {list(ALL_KINDS)}")
    template = ALL_KINDS[kind][0]
    if "{L}" in template:
        if layer is None:
            raise UnknownSiteError(f"site kind {kind!r} lives in a block: pass a layer, e.g. site_name({kind!r}, 0)")
        return template.format(L=layer)
    if layer is not None:
        raise UnknownSiteError(f"site kind {kind!r} is not per-layer: call site_name({kind!r}) without a layer")
    return template


def parse_site(name: str) -> Site | None:
    """Parse a name into a :class:`Site` by syntax alone; None if it is not of the vocabulary's form."""
    if name in _GLOBAL:
        return Site(name=name, kind=_GLOBAL[name], layer=None)
    match = _BLOCK_RE.match(name)
    if match and match.group(2) in _BLOCK_SUFFIX:
        return Site(name=name, kind=_BLOCK_SUFFIX[match.group(2)], layer=int(match.group(1)))
    return None


def resolve_site(name: str, valid: Sequence[str]) -> Site:
    """Parse ``name`` and check it against a model's valid sites, or raise with the nearest names."""
    if not isinstance(name, str):
        raise UnknownSiteError(f"site names are strings such as 'blocks.0.hook_resid_pre', got {name!r}")
    if name in valid:
        site = parse_site(name)
        assert site is not None  # every valid name is of the vocabulary's form
        return site
    parsed = parse_site(name)
    hint = ""
    if parsed is not None and parsed.layer is not None:
        n_layers = sum(1 for v in valid if v.endswith(".hook_resid_pre"))
        if parsed.layer >= n_layers:
            hint = f" The model has {n_layers} layers (0..{n_layers - 1})."
        else:
            hint = f" This architecture has no {parsed.kind!r} site."
    elif parsed is not None:
        hint = f" This architecture has no {parsed.kind!r} site."
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    suggestion = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownSiteError(f"unknown site {name!r}.{hint}{suggestion} See model.sites for the full list.")
