"""``Model``: a tokenizer, a Hugging Face causal LM and its architecture adapter, behind one API.

Three ways to run it:

* ``model.run(inputs, interventions=[...])`` -> logits, with any interventions applied;
* ``model.run_with_cache(inputs, sites=[...], grads=metric)`` -> (logits, cache), the cache holding
  activations and, when a metric is given, its gradients at every captured site;
* ``with model.hooks(interventions=..., capture=...) as session:`` for several forwards under the
  same hooks (``session.cache`` after each ``model.run``).

``model.generate(prompts, interventions=[...], max_new_tokens=...)`` continues prompts token by token
with a KV cache, the interventions applied at absolute token positions (:mod:`interp.generation`).

One ``Model`` may be shared between threads (the live app's sessions): :attr:`Model.lock`, a
re-entrant lock, is held for the whole life of a :class:`~interp.hooks.HookSession` and around every
forward, so a forward of one thread never runs under another thread's hooks.

Inputs are a prompt, a list of prompts (left-padded, see :mod:`interp.tokenize`), a
:class:`~interp.tokenize.TokenBatch`, or a tensor of token ids. The model is put in eval mode on
construction and a run in training mode is refused, since dropout would make every number random.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import nn

from interp.arch import ArchAdapter, adapter_for
from interp.attention import adopt_eager_attention
from interp.cache import ActivationCache
from interp.errors import InvalidArgumentError, ModelStateError, TokenizationError
from interp.hooks import HookSession
from interp.interventions import Intervention
from interp.positions import PositionFrame
from interp.sites import Site, parse_site, resolve_site
from interp.tokenize import TokenBatch, encode, tokenize, tokenize_pairs

if TYPE_CHECKING:
    from interp.generation import Generation

Inputs = str | Sequence[str] | TokenBatch | torch.Tensor
Metric = Callable[[Float[torch.Tensor, "batch pos vocab"]], Float[torch.Tensor, ""]]

BOS_FAMILIES = ("gemma",)
"""Model-type prefixes of families trained with a BOS token before every sequence."""


def default_prepend_bos(tokenizer, family: str) -> tuple[bool, str]:
    """Whether prompts should start with BOS when nothing else says so, and which source decided.

    In order: a tokenizer without a BOS token gives False; a tokenizer config that sets
    ``add_bos_token`` decides; a post-processor that adds BOS gives True; a family in
    :data:`BOS_FAMILIES` gives True; otherwise False.
    """
    bos = tokenizer.bos_token_id
    if bos is None:
        return False, "the tokenizer has no BOS token"
    init_kwargs = getattr(tokenizer, "init_kwargs", {}) or {}
    if init_kwargs.get("add_bos_token") is not None:
        return bool(init_kwargs["add_bos_token"]), "tokenizer config add_bos_token"
    with_special = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    without = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    if with_special[:1] == [bos] and without[:1] != [bos]:
        return True, "tokenizer post-processor adds BOS"
    if family.startswith(BOS_FAMILIES):
        return True, f"{family} family requires BOS"
    return False, "no source asks for BOS"


class Model:
    """A causal LM with the workbench's site vocabulary and hook layer."""

    def __init__(
        self,
        hf_model: nn.Module,
        tokenizer,
        name: str | None = None,
        prepend_bos: bool | None = None,
        prepend_bos_source: str | None = None,
        adapter: ArchAdapter | None = None,
    ) -> None:
        """Wrap ``hf_model`` and ``tokenizer``.

        ``prepend_bos`` None means what the model expects (:func:`default_prepend_bos`);
        ``prepend_bos_source`` names where a given value came from (shown by ``repr``).
        ``adapter`` is given by a backend whose model another library holds
        (:meth:`from_transformer_lens`, :meth:`from_nnsight`); the module tree then stays as that
        library set it up (its attention implementation is not switched).
        """
        self.hf = hf_model.eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(hf_model.config, "_name_or_path", None) or hf_model.config.model_type
        self.arch = adapter if adapter is not None else adapter_for(hf_model)
        if prepend_bos is None:
            self.prepend_bos, self.prepend_bos_source = default_prepend_bos(tokenizer, self.arch.family)
        elif not isinstance(prepend_bos, bool):
            raise InvalidArgumentError(
                f"prepend_bos={prepend_bos!r} is not a bool; pass True, False, or None for the model's default"
            )
        else:
            if prepend_bos and tokenizer.bos_token_id is None:
                raise InvalidArgumentError(
                    f"prepend_bos=True but the tokenizer of {self.name!r} has no BOS token; pass prepend_bos=False"
                )
            self.prepend_bos, self.prepend_bos_source = prepend_bos, prepend_bos_source or "set by the caller"
        if adapter is None:
            adopt_eager_attention(hf_model)
        self.sites: list[str] = self.arch.site_names()
        self._site_set = frozenset(self.sites)
        self.lock = threading.RLock()

    @classmethod
    def from_transformer_lens(cls, bridge: Any, name: str | None = None, prepend_bos: bool | None = None) -> Model:
        """Wrap a TransformerLens 4 ``TransformerBridge`` without copying it (:mod:`interp.arch.bridge`).

        The bridge keeps working as before (its own hooks, ``run_with_cache``, generation); no hook
        of ours stays on it after a call. ``prepend_bos`` None: the tokenizer's default, not TL's
        ``default_prepend_bos``. Unavailable on a bridge: the KV cache (generate with
        ``use_cache=False``), and RelP/AtP* rules whose modules the bridge bypasses (clear errors).
        """
        from interp.arch.bridge import bridge_adapter, bridge_model

        hf_model = bridge_model(bridge)
        return cls(hf_model, bridge.tokenizer, name, prepend_bos, adapter=bridge_adapter(hf_model, adapter_for(hf_model)))

    @classmethod
    def from_nnsight(cls, model: Any, name: str | None = None, prepend_bos: bool | None = None) -> Model:
        """Wrap an nnsight ``LanguageModel``/``TransformersModel`` without copying it (:mod:`interp.arch.envoy`).

        The same module tree runs under our hooks and nnsight's traces; every capability is available.
        """
        from interp.arch.envoy import envoy_adapter, envoy_module

        hf_model = envoy_module(model)
        return cls(hf_model, model.tokenizer, name, prepend_bos, adapter=envoy_adapter(hf_model, adapter_for(hf_model)))

    def __repr__(self) -> str:
        d = self.arch.dims
        return (
            f"Model({self.name!r}, family={self.arch.family}, backend={self.arch.backend}, layers={d.n_layers}, d_model={d.d_model}, "
            f"heads={d.n_heads}/{d.n_kv_heads} kv, device={self.device}, dtype={self.dtype}, "
            f"prepend_bos={self.prepend_bos} ({self.prepend_bos_source}))"
        )

    # --- properties --------------------------------------------------------------------------
    @property
    def dims(self):
        return self.arch.dims

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    def site(self, name: str) -> Site:
        """Parse and validate a site name (raises with the nearest names if unknown)."""
        if name in self._site_set:
            site = parse_site(name)
            if site is not None:
                return site
        return resolve_site(name, self.sites)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Model:
        """Move/cast the model in place; returns self."""
        self.hf.to(device=device, dtype=dtype)
        return self

    # --- tokens ------------------------------------------------------------------------------
    def to_tokens(self, prompts: str | Sequence[str]) -> TokenBatch:
        """Left-padded token batch on the model's device."""
        return tokenize(self.tokenizer, prompts, self.prepend_bos).to(self.device)

    def tokenize_pairs(self, clean: Sequence[str], corrupt: Sequence[str]) -> tuple[TokenBatch, TokenBatch]:
        """Clean and corrupt batches padded alike; refuses pairs of different token lengths."""
        a, b = tokenize_pairs(self.tokenizer, clean, corrupt, self.prepend_bos)
        return a.to(self.device), b.to(self.device)

    def token_id(self, text: str) -> int:
        """The id of a text that must be exactly one token (e.g. ``" Mary"``)."""
        ids = encode(self.tokenizer, text)
        if len(ids) != 1:
            pieces = [self.tokenizer.decode([i]) for i in ids]
            raise TokenizationError(f"{text!r} is {len(ids)} tokens {pieces}, not one; pick a single-token word")
        return ids[0]

    @property
    def vocab_size(self) -> int:
        """Number of token ids the input embedding has rows for."""
        return int(self.hf.get_input_embeddings().weight.shape[0])

    @property
    def context_length(self) -> int | None:
        """Most tokens a prompt may have (the config's ``max_position_embeddings``; None if unset)."""
        limit = getattr(self.hf.config, "max_position_embeddings", None)
        return None if limit is None else int(limit)

    def as_batch(self, inputs: Inputs) -> TokenBatch:
        """``inputs`` as a token batch on the model's device.

        Raises :class:`TokenizationError` if the ids are not integers, lie outside
        ``0 .. vocab_size - 1``, or a prompt is longer than :attr:`context_length`.
        """
        if isinstance(inputs, TokenBatch):
            batch = inputs.to(self.device)
        elif isinstance(inputs, torch.Tensor):
            if inputs.dtype == torch.bool or inputs.is_floating_point() or inputs.is_complex():
                raise TokenizationError(
                    f"token ids must be an integer tensor, got dtype {inputs.dtype}; convert with ids.long() "
                    "(or pass the prompts as text)"
                )
            batch = TokenBatch.from_ids(inputs.to(self.device))
        else:
            batch = self.to_tokens(inputs)
        return self._check_batch(batch)

    def _check_batch(self, batch: TokenBatch) -> TokenBatch:
        ids = batch.input_ids
        if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
            raise TokenizationError(f"TokenBatch ids must be integers, got dtype {ids.dtype}; convert with ids.long()")
        if ids.numel():
            vocab = self.vocab_size
            low, high = int(ids.min()), int(ids.max())
            if low < 0 or high >= vocab:
                bad = low if low < 0 else high
                raise TokenizationError(
                    f"token id {bad} is outside the vocabulary of {self.name!r}: ids must be 0..{vocab - 1} "
                    f"(vocab size {vocab}; the largest id given is {high}); were the ids made by another tokenizer?"
                )
        limit = self.context_length
        longest = int(batch.lengths.max()) if ids.numel() else 0
        if limit is not None and longest > limit:
            raise TokenizationError(
                f"a prompt of {longest} tokens is longer than the context of {self.name!r} "
                f"({limit} tokens, max_position_embeddings); shorten the prompt to at most {limit} tokens"
            )
        return batch

    # --- running -----------------------------------------------------------------------------
    def hooks(
        self,
        interventions: Sequence[Intervention] = (),
        capture: Sequence[str] = (),
        positions: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        grad_sites: Sequence[str] = (),
        stop_after_capture: bool = False,
    ) -> HookSession:
        """Context manager applying interventions and capturing sites for every forward inside.

        ``stop_after_capture`` ends each forward (raising :class:`~interp.hooks.CaptureComplete`)
        as soon as every captured site has fired.
        """
        return HookSession(self, interventions, capture, positions, device, dtype, grad_sites, stop_after_capture)

    def forward(
        self, batch: TokenBatch, session: HookSession | None = None, **hf_kwargs: Any
    ) -> Float[torch.Tensor, "batch pos vocab"]:
        """One forward pass of a token batch (inside ``session``'s hooks, if given)."""
        hf_kwargs.setdefault("use_cache", False)
        output = self.call(
            session,
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            **hf_kwargs,
        )
        return output.logits

    def call(self, session: HookSession | None = None, frame: PositionFrame | None = None, **hf_kwargs: Any) -> Any:
        """Call the HF model with raw keyword arguments, checking eval mode and that hooks fired.

        ``frame`` gives the absolute token positions of the forward's columns (a decode step of
        generation sees one new column); ``session``'s interventions select positions by it.
        The model's lock is held for the call.
        """
        if self.hf.training:
            raise ModelStateError("the model is in training mode (dropout on); call model.hf.eval() first")
        self.arch.check_forward(hf_kwargs)
        with self.lock:
            before = session.start_forward(frame) if session is not None else None
            output = self.hf(**hf_kwargs)
            if session is not None and before is not None:
                session.check_fired(before)
        return output

    def run(self, inputs: Inputs, interventions: Sequence[Intervention] = ()) -> Float[torch.Tensor, "batch pos vocab"]:
        """Logits of ``inputs`` with ``interventions`` applied (no gradients)."""
        batch = self.as_batch(inputs)
        with torch.no_grad():
            if not interventions:
                return self.forward(batch)
            with self.hooks(interventions) as session:
                return self.forward(batch, session)

    def generate(
        self,
        prompts: Inputs,
        interventions: Sequence[Intervention] = (),
        max_new_tokens: int = 20,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop_tokens: Sequence[int] = (),
        return_logits: bool = False,
        use_cache: bool = True,
    ) -> Generation:
        """Continue ``prompts`` with ``interventions`` at absolute token positions; see :func:`interp.generation.generate`."""
        from interp.generation import generate

        return generate(
            self, prompts, interventions, max_new_tokens, temperature, top_k, top_p, seed, stop_tokens,
            return_logits, use_cache,
        )

    def run_with_cache(
        self,
        inputs: Inputs,
        sites: Sequence[str] | None = None,
        positions: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        grads: Metric | None = None,
        interventions: Sequence[Intervention] = (),
    ) -> tuple[Float[torch.Tensor, "batch pos vocab"], ActivationCache]:
        """Run and capture ``sites`` (default: every site but attention patterns).

        Args:
            inputs: prompts, a TokenBatch or token ids.
            sites: site names to capture; None captures all but ``hook_pattern`` sites.
            positions: keep only these positions of each capture (negative counts from the end).
            device, dtype: where and how to store captures (e.g. ``"cpu"``, ``torch.float16``).
            grads: a metric ``logits -> scalar``; when given, ``cache.grads[site]`` holds d metric /
                d site for every captured site, through backward passes over the exact tensors.
            interventions: applied during the same forward; captures see the intervened values.
        """
        batch = self.as_batch(inputs)
        if sites is None:
            sites = [s for s in self.sites if not s.endswith("hook_pattern")]
        grad_sites = list(sites) if grads is not None else []
        with self.hooks(interventions, sites, positions, device, dtype, grad_sites) as session:
            with torch.set_grad_enabled(grads is not None):
                logits = self.forward(batch, session)
                gradients = session.gradients(grads(logits)) if grads is not None else {}
            cache = session.cache
        cache.grads = gradients
        return logits.detach(), cache
