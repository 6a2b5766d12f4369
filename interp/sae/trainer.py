"""The optimisation loop: several SAEs trained side by side on one stream of activation batches.

Per step and per SAE (the recipe of Gao et al. 2024 as implemented by OpenAI and sparsify):

1. at step 0, ``b_dec`` is set to the mean of the first batch (sparsify), so the encoder starts
   centred;
2. the loss (:func:`interp.sae.losses.sae_loss`) is computed, under bfloat16 autocast on CUDA when
   mixed precision is on (parameters and Adam state stay float32; CPU runs in float32);
3. backward; the component of each decoder row's gradient along the row is removed, the gradient
   norm is clipped if asked, Adam steps, and decoder rows are renormalised to unit length;
4. "tokens since fired" is updated per latent; latents silent for ``dead_after_tokens`` tokens
   feed the AuxK loss.

**Learning rate**: ``lr = base_lr / sqrt(d_sae / 2^14)`` (the 1/sqrt(width) law of sparsify and
dictionary_learning; ``base_lr`` 2e-4), linear warm-up over ``warmup_steps`` and linear decay to 0
over the last ``decay_steps``. It is a pure function of the step, so nothing about it needs saving.

**Several SAEs, one pass**: every SAE reads its site's slice of the same batch (SAEs on different
layers share one truncated forward in the store; a hyperparameter sweep on one site shares the
very same tokens). Each has its own Adam and dead-latent counters.

**Checkpoints** hold, in one safetensors file written atomically, every SAE's parameters and
buffers, Adam's moments and step counts, the dead-latent counters and the step number; with the
store's position-seeded stream that is the whole state, so a killed run resumed from its last
checkpoint continues bit for bit as the uninterrupted run would have (``tests/sae/test_train.py``).

**Data-parallel training** (``distributed=True``, inside an initialised :mod:`torch.distributed`
process group, e.g. under ``torchrun``): each process steps on its equal part of every global
batch, and each SAE is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, which
averages the gradients. The loss is normalised by the *whole* batch's token count and variance
(:func:`interp.sae.losses.sae_loss` with ``reduce``) and scaled by the world size, so the averaged
gradient is the whole batch's gradient; ``b_dec``'s initial mean, the fired-latent counters and the
logged statistics are also reduced over processes. For the per-token activations (TopK, top-AFA,
ReLU, JumpReLU) every replica therefore takes the single-process step up to the order of float
additions; a batch-level selection (BatchTopK) selects within each process's part, with rank 0's
buffers broadcast each step. The checkpoint holds no trace of the world size, so a run resumes
under any number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from pydantic import Field
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from interp.config import ConfigModel
from interp.errors import InvalidArgumentError, UnknownSiteError
from interp.sae.sae import SAE
from interp.sae.losses import LossOutput, sae_loss
from interp.sae.store import ActivationBatch

WIDTH_REFERENCE = 2**14


class OptimConfig(ConfigModel):
    """Optimiser and recipe settings shared by the SAEs of one training run."""

    base_lr: float = Field(2e-4, gt=0, description="lr at d_sae = 2^14; scaled by 1/sqrt(d_sae / 2^14)")
    lr: float | None = Field(None, gt=0, description="a fixed lr instead of the width-scaled one")
    warmup_steps: int = Field(100, ge=0)
    decay_steps: int = Field(0, ge=0, description="linear decay to 0 over the last steps")
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(6.25e-10, gt=0)
    grad_clip: float | None = Field(None, gt=0)
    auxk_coef: float = Field(1 / 32, ge=0)
    k_aux: int | None = Field(None, gt=0, description="dead latents used by AuxK (default d_in / 2)")
    dead_after_tokens: int = Field(1_000_000, gt=0)
    mixed_precision: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on CPU)")


def learning_rate(config: OptimConfig, d_sae: int, step: int, total_steps: int) -> float:
    """The learning rate at ``step`` of ``total_steps`` (see the module docstring)."""
    base = config.lr if config.lr is not None else config.base_lr / math.sqrt(d_sae / WIDTH_REFERENCE)
    factor = 1.0
    if config.warmup_steps and step < config.warmup_steps:
        factor = (step + 1) / config.warmup_steps
    if config.decay_steps and step >= total_steps - config.decay_steps:
        factor = min(factor, (total_steps - step) / config.decay_steps)
    return base * factor


@dataclass
class StepStats:
    """What one step of one SAE measured."""

    loss: float
    fvu: float
    auxk: float
    l0: float
    dead_fraction: float
    lr: float


class _LossModule(torch.nn.Module):
    """An SAE's training loss as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, sae: SAE) -> None:
        super().__init__()
        self.sae = sae
        self.last: LossOutput | None = None

    def forward(self, x: Tensor, grad: Tensor | None, dead: Tensor, config: OptimConfig, reduce: Callable | None) -> Tensor:
        self.last = sae_loss(self.sae, x, grad, dead, config.auxk_coef, config.k_aux, reduce)
        return self.last.loss


def _sum_over_processes(tensor: Tensor) -> Tensor:
    """``tensor`` summed over every process of the default group (a copy; no gradient flows)."""
    total = tensor.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


@dataclass
class _Slot:
    name: str
    sae: SAE
    optimizer: torch.optim.Adam
    since_fired: Tensor
    module: torch.nn.Module
    history: list[StepStats] = field(default_factory=list)


class SAETrainer:
    """Trains named SAEs on a stream of :class:`~interp.sae.store.ActivationBatch`."""

    def __init__(
        self,
        saes: dict[str, SAE],
        config: OptimConfig,
        total_steps: int,
        device: torch.device | str = "cpu",
        distributed: bool = False,
    ) -> None:
        if distributed and not dist.is_initialized():
            raise InvalidArgumentError("distributed training needs an initialised process group; launch with torchrun")
        self.distributed = distributed
        self.world = dist.get_world_size() if distributed else 1
        self.config = config
        self.total_steps = total_steps
        self.device = torch.device(device)
        self.step_index = 0
        self.slots: dict[str, _Slot] = {}
        for name, sae in saes.items():
            sae.to(self.device).train()
            params = [p for p in sae.parameters() if p.requires_grad]
            optimizer = torch.optim.Adam(params, lr=0.0, betas=config.betas, eps=config.eps)
            since = torch.zeros(sae.d_sae, dtype=torch.long, device=self.device)
            module: torch.nn.Module = _LossModule(sae)
            if distributed:
                ids = [self.device.index or 0] if self.device.type == "cuda" else None
                module = DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
            self.slots[name] = _Slot(name, sae, optimizer, since, module)

    @property
    def saes(self) -> dict[str, SAE]:
        return {name: slot.sae for name, slot in self.slots.items()}

    def _autocast(self):
        enabled = self.device.type == "cuda" and self.config.mixed_precision
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def step(self, batch: ActivationBatch) -> dict[str, StepStats]:
        """One optimisation step of every SAE on ``batch``."""
        stats = {}
        for slot in self.slots.values():
            sae = slot.sae
            site = sae.site
            if site not in batch.acts:
                raise UnknownSiteError(f"SAE {slot.name!r} reads {site!r}, which the batch does not hold ({list(batch.acts)})")
            x = batch.acts[site].to(self.device, non_blocking=True)
            grad = batch.grads[site].to(self.device) if batch.grads is not None else None
            reduce = _sum_over_processes if self.distributed else None
            if self.step_index == 0:
                with torch.no_grad():
                    mean = sae.normalize_input(x.to(sae.b_dec.dtype))[0].mean(dim=0)
                    sae.b_dec.copy_(mean if reduce is None else reduce(mean) / self.world)
            lr = learning_rate(self.config, sae.d_sae, self.step_index, self.total_steps)
            for group in slot.optimizer.param_groups:
                group["lr"] = lr
            dead = slot.since_fired >= self.config.dead_after_tokens
            with self._autocast():
                loss = slot.module(x, grad, dead, self.config, reduce)
            out = (slot.module.module if self.distributed else slot.module).last
            slot.optimizer.zero_grad(set_to_none=True)
            (loss * self.world).backward()  # DDP averages: the world's share-gradients add up to the batch's
            sae.project_decoder_grad()
            if self.config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(sae.parameters(), self.config.grad_clip)
            slot.optimizer.step()
            sae.normalize_decoder()
            with torch.no_grad():
                fired = out.latents.fired() > 0
                tokens, l0 = x.shape[0], out.latents.l0().float().sum()
                parts = torch.stack([out.loss.detach(), out.fvu.detach(), out.auxk.detach()]).float()
                if reduce is not None:
                    fired = reduce(fired.to(torch.int32)) > 0
                    tokens, l0, parts = tokens * self.world, reduce(l0), reduce(parts)
                slot.since_fired.add_(tokens).masked_fill_(fired, 0)
                sae.activation.update(out.latents)
            stat = StepStats(
                loss=float(parts[0]),
                fvu=float(parts[1]),
                auxk=float(parts[2]),
                l0=float(l0) / tokens,
                dead_fraction=float(dead.float().mean()),
                lr=lr,
            )
            slot.history.append(stat)
            stats[slot.name] = stat
        self.step_index += 1
        return stats

    def fit(
        self,
        batches: Iterator[ActivationBatch],
        on_step: Callable[[int, dict[str, StepStats]], None] | None = None,
        checkpoint: Callable[[SAETrainer], None] | None = None,
        checkpoint_every: int = 0,
    ) -> None:
        """Train until ``total_steps``; ``checkpoint(self)`` runs every ``checkpoint_every`` steps."""
        for batch in batches:
            if self.step_index >= self.total_steps:
                break
            if batch.index != self.step_index:
                raise InvalidArgumentError(f"batch {batch.index} arrived at step {self.step_index}; start the stream at the step")
            stats = self.step(batch)
            if on_step is not None:
                on_step(self.step_index, stats)
            if checkpoint is not None and checkpoint_every and self.step_index % checkpoint_every == 0:
                checkpoint(self)

    # --- checkpoint state --------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Tensor]:
        """Everything training needs to continue exactly, as a flat dict of CPU tensors."""
        state: dict[str, Tensor] = {"step": torch.tensor(self.step_index, dtype=torch.long)}
        for name, slot in self.slots.items():
            for key, value in slot.sae.state_dict().items():
                state[f"{name}.sae.{key}"] = value.detach().cpu().clone()
            state[f"{name}.since_fired"] = slot.since_fired.cpu().clone()
            params = [p for p in slot.sae.parameters() if p.requires_grad]
            names = [n for n, p in slot.sae.named_parameters() if p.requires_grad]
            for pname, param in zip(names, params, strict=True):
                for key, value in slot.optimizer.state.get(param, {}).items():
                    state[f"{name}.adam.{pname}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
        return state

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state_tensors` returned."""
        self.step_index = int(state["step"])
        for name, slot in self.slots.items():
            sae_state = {k[len(f"{name}.sae.") :]: v for k, v in state.items() if k.startswith(f"{name}.sae.")}
            slot.sae.load_state_dict(sae_state)
            slot.since_fired.copy_(state[f"{name}.since_fired"])
            for pname, param in slot.sae.named_parameters():
                if not param.requires_grad:
                    continue
                prefix = f"{name}.adam.{pname}."
                entries = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                if entries:
                    slot.optimizer.state[param] = {
                        key: value.to(self.device) if key != "step" else value.clone() for key, value in entries.items()
                    }
