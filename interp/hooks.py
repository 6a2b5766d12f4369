"""The hook layer: plain PyTorch hooks that read, write and differentiate sites.

A :class:`HookSession` turns a request (interventions, sites to capture, sites to differentiate)
into torch hooks on the modules where those sites live (:mod:`interp.arch`), and guarantees four
things the anchor tools leave to luck:

* **Nothing leaks.** Hooks are removed, and the attention implementation restored, on every exit
  path: normal exit, an exception in the forward, an exception in a hook.
* **Nothing is silently skipped.** A hook that never fired is an error
  (:class:`~interp.errors.HookNotFiredError`), checked after every forward the model runs and again
  when the session closes.
* **No numbers change unless asked.** A capture-only hook returns ``None`` (the module's output is
  untouched, so logits stay bitwise identical); interventions write out of place.
* **One session at a time per model.** A session holds its model's re-entrant lock
  (:attr:`~interp.model.Model.lock`) from ``__enter__`` to ``__exit__``, and every forward holds it
  too, so on a model shared between threads a forward never runs under another thread's hooks and
  gives exactly the numbers it gives alone. The same thread may nest sessions and forwards.

A forward may carry a :class:`~interp.positions.PositionFrame`: the absolute token position of each
of its columns. Generation passes one with every forward, so an intervention at position 5 means
token 5 of each row whether the forward holds the whole sequence or only the newest token.

Gradients are taken with ``torch.autograd.grad`` with respect to the exact tensors that flowed on
at each site (a fresh tensor per site, written back into the forward), never with ``retain_grad``
on reshaped views, which is silently inert (TransformerLens PR #1750). Only the graph between the
sites and the metric is differentiated; parameters accumulate no ``.grad``.

A session can also **stop the forward early** (``stop_after_capture=True``): once every captured
site has fired in a forward, the hook that captured the last one raises :class:`CaptureComplete`,
so reading a middle layer costs only the blocks up to it. The caller catches it around the forward;
the captures are complete and no later module runs.

Several sites on one module (q, k and v on GPT-2's fused ``c_attn``) chain in forward order; the
derived ``resid_mid`` reads the block's input from a stash hook registered after all others, so it
sees the block input *after* any intervention on ``resid_pre``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import weakref
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.hooks import RemovableHandle

from interp.arch.base import Location
from interp.cache import ActivationCache
from interp.errors import HookNotFiredError, InterventionError
from interp.indices import as_indices
from interp.interventions import Intervention, _check_indices
from interp.positions import PositionFrame
from interp.sites import Site

if TYPE_CHECKING:
    from interp.model import Model


class CaptureComplete(Exception):
    """Raised inside a forward by a ``stop_after_capture`` session once every captured site fired.

    Control flow, not an error: catch it around ``model.forward(batch, session)`` and read
    ``session.cache``.
    """


@dataclass
class SiteRequest:
    """Everything asked of one site in a session."""

    site: Site
    location: Location
    interventions: list[Intervention] = field(default_factory=list)
    capture: bool = False
    grad: bool = False
    fired: int = 0


class HookSession:
    """Hooks for one set of interventions, captures and gradient sites on a :class:`Model`.

    Use it as a context manager (``with model.hooks(...) as session:``); every forward run inside
    applies the interventions and records captures. :attr:`cache` holds the last forward's
    activations, :meth:`gradients` differentiates a metric of that forward.
    """

    def __init__(
        self,
        model: Model,
        interventions: Sequence[Intervention] = (),
        capture: Sequence[str] = (),
        positions: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        grad_sites: Sequence[str] = (),
        stop_after_capture: bool = False,
    ) -> None:
        self.model = model
        self.positions = None if positions is None else as_indices(positions, "positions", "to capture", InterventionError)
        self.device = device
        self.dtype = dtype
        self.requests: dict[str, SiteRequest] = {}
        for intervention in interventions:
            if not isinstance(intervention, Intervention):
                raise InterventionError(f"expected an Intervention (Patch, Add, ...), got {type(intervention).__name__}")
            self._request(intervention.site).interventions.append(intervention)
        for name in capture:
            self._request(name).capture = True
        for name in grad_sites:
            self._request(name).grad = True
        if stop_after_capture and (grad_sites or not capture):
            raise InterventionError(
                "stop_after_capture needs sites to capture and no gradient sites (a backward pass needs the whole forward)"
            )
        self.stop_after_capture = stop_after_capture
        self._pending: set[str] = set()
        self.activations: dict[str, torch.Tensor] = {}
        self.live: dict[str, torch.Tensor] = {}
        self._stash: dict[int, torch.Tensor] = {}
        self._stored: list[tuple[weakref.ref, int, int, torch.Tensor]] = []
        self._handles: list[RemovableHandle] = []
        self._stack = ExitStack()
        self._open = False
        self._locked = False
        self.frame: PositionFrame | None = None

    def _request(self, name: str) -> SiteRequest:
        if name not in self.requests:
            site = self.model.site(name)
            self.requests[name] = SiteRequest(site=site, location=self.model.arch.locate(site))
        return self.requests[name]

    @property
    def needs_patterns(self) -> bool:
        return any(r.site.kind == "pattern" for r in self.requests.values())

    @property
    def needs_grad(self) -> bool:
        return any(r.grad for r in self.requests.values())

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> HookSession:
        self.model.lock.acquire()
        self._locked = True
        try:
            if self.needs_patterns:
                self._stack.enter_context(self.model.arch.use_attention())
            order = {name: index for index, name in enumerate(self.model.sites)}
            for name in sorted(self.requests, key=order.__getitem__):
                self._register(self.requests[name])
            self._register_stashes()
            if self.needs_grad:
                handle = self.model.arch.embed().register_forward_hook(_require_grad)
                self._handles.append(handle)
        except BaseException:
            self._close()
            raise
        self._open = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()
        if exc_type is None:
            silent = [name for name, request in self.requests.items() if request.fired == 0]
            if silent:
                raise HookNotFiredError(
                    f"hooks at {silent} never fired during this session: the forward pass did not reach "
                    "these sites (was the model run inside the `with` block? does it stop early?)"
                )

    def _close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.close()
        self._stash.clear()
        self._stored.clear()
        self._open = False
        self.frame = None
        if self._locked:
            self._locked = False
            self.model.lock.release()

    # --- per-forward bookkeeping (called by Model) ------------------------------------------
    def start_forward(self, frame: PositionFrame | None = None) -> dict[str, int]:
        """Reset per-forward state and set the forward's position frame; returns fire counts to
        compare after the forward."""
        self.frame = frame
        self.activations = {}
        self.live = {}
        self._pending = {name for name, request in self.requests.items() if request.capture}
        self._stash.clear()
        self._stored.clear()
        return {name: request.fired for name, request in self.requests.items()}

    def check_fired(self, before: dict[str, int]) -> None:
        """Raise if a requested site did not fire in the forward that started at ``before``."""
        silent = [name for name, request in self.requests.items() if request.fired == before[name]]
        if silent:
            raise HookNotFiredError(
                f"hooks at {silent} did not fire in this forward pass: the model never reached these sites"
            )

    @property
    def cache(self) -> ActivationCache:
        """Activations captured in the last forward pass."""
        return ActivationCache(dict(self.activations), positions=self.positions)

    def gradients(self, metric: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gradients of a scalar ``metric`` of the last forward at every gradient site."""
        if metric.numel() != 1:
            raise InterventionError(
                f"the gradient metric must be a scalar, got shape {tuple(metric.shape)}; reduce it (e.g. .sum() or .mean())"
            )
        names = [name for name, request in self.requests.items() if request.grad]
        tensors = [self.live[name] for name in names]
        grads = torch.autograd.grad(metric.reshape(()), tensors, allow_unused=True)
        result = {}
        for name, tensor, grad in zip(names, tensors, grads, strict=True):
            grad = torch.zeros_like(tensor) if grad is None else grad
            result[name] = self._select_store(self.requests[name].site, grad)
        return result

    # --- hooks -------------------------------------------------------------------------------
    def _register(self, request: SiteRequest) -> None:
        location = request.location
        process = self._processor(request)
        if location.hook == "output":

            def output_hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
                return process(output)

            self._handles.append(location.module.register_forward_hook(output_hook))
        else:

            def input_hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
                if args:
                    new = process(args[0])
                    return None if new is None else ((new, *args[1:]), kwargs)
                new = process(kwargs["hidden_states"])
                return None if new is None else (args, {**kwargs, "hidden_states": new})

            self._handles.append(location.module.register_forward_pre_hook(input_hook, with_kwargs=True))

    def _register_stashes(self) -> None:
        layers = {r.location.offset_layer for r in self.requests.values() if r.location.offset_layer is not None}
        for layer in sorted(layers):

            def stash(module: torch.nn.Module, args: tuple, kwargs: dict, layer: int = layer) -> None:
                self._stash[layer] = args[0] if args else kwargs["hidden_states"]

            block = self.model.arch.layers()[layer]
            self._handles.append(block.register_forward_pre_hook(stash, with_kwargs=True))

    def _processor(self, request: SiteRequest) -> Callable[[Any], Any]:
        site, location = request.site, request.location

        def process(raw: Any) -> Any:
            value = location.read(raw)
            offset = None
            if location.offset_layer is not None:
                offset = self._stash[location.offset_layer]
                value = offset + value
            changed = False
            frame = self.frame
            for intervention in request.interventions:
                value = intervention.apply(value, site) if frame is None else intervention.apply(value, site, frame)
                changed = True
            if request.grad:
                if not changed and offset is None:
                    value = value.clone()
                changed = True
                self.live[site.name] = value
            if request.capture:
                self.activations[site.name] = self._store_once(site, value)
            request.fired += 1
            if self.stop_after_capture and request.capture:
                self._pending.discard(site.name)
                if not self._pending:
                    raise CaptureComplete
            if not changed:
                return None
            return location.write(raw, value if offset is None else value - offset)

        return process

    def _store_once(self, site: Site, value: torch.Tensor) -> torch.Tensor:
        """Store a copy of ``value``, sharing it when the same unmodified tensor was stored already
        (``resid_post[L]`` and ``resid_pre[L+1]`` are one tensor)."""
        for original, version, axis, stored in self._stored:
            if original() is value and version == value._version and axis == site.pos_axis:
                return stored
        stored = self._select_store(site, value.detach())
        self._stored.append((weakref.ref(value), value._version, site.pos_axis, stored))
        return stored

    def _select_store(self, site: Site, value: torch.Tensor) -> torch.Tensor:
        if self.positions is not None:
            index = _check_indices(self.positions, value.shape[site.pos_axis], "positions", site)
            value = value.index_select(site.pos_axis, torch.tensor(index, device=value.device))
        return value.to(device=self.device or value.device, dtype=self.dtype or value.dtype, copy=True)


def _require_grad(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
    """Make the embedding output require grad, so every site downstream is differentiable."""
    if torch.is_grad_enabled() and not output.requires_grad:
        return output.detach().requires_grad_(True)
    return None
