"""The activation patching engine: exact sweeps at a fraction of the naive cost.

Activation patching asks how much one component matters by running the model on one input while
forcing that component to the value it takes on another input, then reading a metric:

* **denoising** (clean -> corrupt): run the *corrupt* prompt, patch in the *clean* activation,
  ``I = m(corrupt | do(n = n_clean))``; a component that restores the clean metric is sufficient;
* **noising** (corrupt -> clean): run the *clean* prompt, patch in the *corrupt* activation,
  ``I = m(clean | do(n = n_corrupt))``; a component whose corruption destroys the metric is necessary.

The run being patched is the *base* run, the run the patch values come from the *source* run.
TransformerLens runs one full forward of the whole batch per cell. The results here are the same
numbers (exact, not approximated: tested against a one-forward-per-cell loop and against
TransformerLens), with four savings that follow from causality:

1. **Start at the patched block.** Blocks before the patched one compute what the base run
   computed, so the forward starts at block ``L`` from the base run's cached ``resid_pre[L]``:
   earlier blocks are skipped and the cached residual is injected at block ``L``'s input (the
   architecture adapter's ``start_at``).
2. **Start at the patched position.** Positions before ``p`` are unchanged in every block, so only
   positions ``p..T-1`` are computed; their attention reads the base run's keys and values of
   positions ``0..p-1`` from a pre-filled KV cache.
3. **Logits only where the metric reads them** (the last position: ``logits_to_keep=1``).
4. **No forward for a patch that changes nothing.** Where an example's source activation equals
   its base activation at every patched entry, the patched run is the base run, so the example
   takes the base run's metric. Clean and corrupt prompts usually share a prefix (every position of
   it, in every block) and, in block 0, every token the corruption leaves alone.

For a (layer x position) sweep the first three are about a quarter of the naive FLOPs (:mod:`.flops`
counts them); the fourth removes the shared prefix on top. Cells with the same starting point share
one forward: each batch row is one (cell, example) pair, and a :class:`MaskedPatch` writes every row
its own cell's patch through a boolean mask, so one forward evaluates many cells. The number of rows
per forward is sized from a memory budget.

A model from a backend that cannot start a forward at a block (:meth:`ArchAdapter.supports
<interp.arch.base.ArchAdapter.supports>`) runs every cell from the tokens, and one without a KV cache
starts at the block but not at the position; the numbers are the same and the result's cost shows
what was spent (``forward_passes`` and ``flops`` next to the naive ones).

A base run changed by interventions (a corruption that is not a prompt, e.g. noise) keeps the
savings only for cells downstream of every intervened block: the cached residual holds the effect
of upstream interventions, but a forward starting earlier would skip ones it should apply, so those
cells run a full forward with the interventions.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int

from interp.arch import kv
from interp.cache import ActivationCache
from interp.cells import Cell, CellGroup, selection_mask
from interp.flops import forward_flops
from interp.interventions import Intervention, MaskedPatch
from interp.model import Model
from interp.patching.result import Cost
from interp.patching.start import entry_layer, is_entry, start_of
from interp.sites import Site, site_name
from interp.tasks.direction import Direction, Which, check_aligned, check_direction, run_spec
from interp.tasks.metrics import TaskMetric
from interp.tokenize import TokenBatch


@dataclass
class CapturedRun:
    """An unpatched run: its tokens, the interventions that define it, captures, keys/values, logits."""

    batch: TokenBatch
    interventions: tuple[Intervention, ...]
    cache: ActivationCache
    keys_values: list[tuple[torch.Tensor, torch.Tensor]] | None
    final_logits: Float[torch.Tensor, "example vocab"]


@dataclass(frozen=True)
class Rows:
    """The batch of one patched forward: row ``r`` is cell group ``group[r]`` of the chunk on example ``example[r]``."""

    group: Int[torch.Tensor, " row"]
    example: Int[torch.Tensor, " row"]

    @classmethod
    def of(cls, live: list[Bool[torch.Tensor, " example"]]) -> Rows:
        """The live (group, example) pairs, group-major."""
        return cls(
            group=torch.cat([torch.full((int(rows.sum()),), g) for g, rows in enumerate(live)]),
            example=torch.cat([rows.nonzero().flatten() for rows in live]),
        )


@dataclass
class PatchingEngine:
    """Runs cell groups of a patching experiment on one task.

    Args:
        model: the model.
        task: a :class:`interp.tasks.PatchingTask` (clean/corrupt batches, corrupt interventions).
        metric: ``(final_logits, task) -> per-example values``.
        direction: ``"denoising"`` (patch clean into corrupt) or ``"noising"`` (corrupt into clean).
        prefix_reuse: start forwards at the patched position with cached keys/values.
        skip_noop_rows: answer (cell, example) pairs whose patch changes no value from the unpatched run.
        max_rows: rows per forward (row groups x examples); default from ``memory_budget``.
        memory_budget: bytes of activations a forward may use when sizing ``max_rows``.
    """

    model: Model
    task: Any
    metric: TaskMetric
    direction: Direction = "denoising"
    prefix_reuse: bool = True
    skip_noop_rows: bool = True
    max_rows: int | None = None
    memory_budget: int = 2 << 30
    cost: Cost = field(default_factory=Cost)
    _base: CapturedRun | None = None
    _source: CapturedRun | None = None

    def __post_init__(self) -> None:
        check_direction(self.direction)
        check_aligned(self.task)

    # --- the two unpatched runs --------------------------------------------------------------
    @property
    def examples(self) -> int:
        return self.task.clean.shape[0]

    @property
    def seq_len(self) -> int:
        return self.task.clean.shape[1]

    def _capture(self, which: Which, sites: Sequence[str], keys_values: bool) -> CapturedRun:
        batch, interventions = run_spec(self.task, which, self.model.device)
        cache_object = kv.empty_cache() if keys_values else None
        with torch.no_grad(), self.model.hooks(interventions, capture=sites) as session:
            output = self.model.call(
                session,
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=keys_values,
                **kv.cache_kwargs(cache_object),
            )
            cache = session.cache
        self.cost.forward_passes += 1
        stored = kv.keys_values(kv.returned_cache(output)) if keys_values else None
        return CapturedRun(batch, interventions, cache, stored, output.logits[:, -1].detach())

    def _start(self, group: CellGroup) -> tuple[int, int]:
        """Where a group's forward starts; from the tokens while a base intervention lies downstream.

        The cached residual and keys/values already hold the effect of every base intervention
        upstream of the start block, but a suffix forward would not apply one at or after it.
        """
        if not self.model.arch.supports("start_at"):
            return (-1, 0)
        start = start_of(group, self._reuses_prefix)
        return (-1, 0) if start[0] <= self._last_intervened_block else start

    @property
    def _reuses_prefix(self) -> bool:
        """Prefix reuse needs a KV cache, which some backends cannot give (then forwards start at position 0)."""
        return self.prefix_reuse and self.model.arch.supports("kv_cache")

    @property
    def _last_intervened_block(self) -> int:
        """The last block holding a site that the base run's interventions write (-1: none)."""
        blocks = [-1]
        base_interventions = self.task.corrupt_interventions if self._base_name == "corrupt" else ()
        for intervention in base_interventions:
            site = self.model.site(intervention.site)
            if site.kind in ("normalized", "logits"):
                blocks.append(self.model.dims.n_layers)
            elif site.layer is not None:
                blocks.append(entry_layer(site) - 1 if is_entry(site) else site.layer)
        return max(blocks)

    @property
    def _base_name(self) -> Which:
        return "corrupt" if self.direction == "denoising" else "clean"

    def _needed_sites(self, groups: Sequence[CellGroup]) -> tuple[set[str], set[str]]:
        """Sites the base run (residual entry points, cells to compare) and the source run must hold."""
        base_sites = {site_name("resid_post", self.model.dims.n_layers - 1)}
        source_sites: set[str] = set()
        for group in groups:
            start_layer, _ = self._start(group)
            if start_layer >= 0:
                base_sites.add(self._entry_site(start_layer))
                if self.skip_noop_rows:
                    base_sites.update(cell.site for cell in group)
            source_sites.update(cell.site for cell in group)
        return base_sites, source_sites

    def prepare(self, groups: Sequence[CellGroup]) -> None:
        """Capture the base and source runs with every site the groups need."""
        base_sites, source_sites = self._needed_sites(groups)
        base_name = self._base_name
        source_name = "clean" if base_name == "corrupt" else "corrupt"
        order = {name: index for index, name in enumerate(self.model.sites)}
        self._base = self._capture(base_name, sorted(base_sites, key=order.__getitem__), self._reuses_prefix)
        self._source = self._capture(source_name, sorted(source_sites, key=order.__getitem__), False)

    def ensure_prepared(self, groups: Sequence[CellGroup]) -> None:
        """Capture the unpatched runs unless they already hold every site ``groups`` need."""
        base_sites, source_sites = self._needed_sites(groups)
        if (
            self._base is None
            or self._source is None
            or not (base_sites <= set(self._base.cache) and source_sites <= set(self._source.cache))
        ):
            self.prepare(groups)

    def _entry_site(self, layer: int) -> str:
        n_layers = self.model.dims.n_layers
        return site_name("resid_pre", layer) if layer < n_layers else site_name("resid_post", n_layers - 1)

    @property
    def baselines(self) -> dict[str, Float[torch.Tensor, " example"]]:
        """The metric on the unpatched clean and corrupt runs."""
        assert self._base is not None and self._source is not None, "call prepare() first"
        clean, corrupt = (self._source, self._base) if self.direction == "denoising" else (self._base, self._source)
        return {
            "clean": self.metric(clean.final_logits, self.task).detach().cpu(),
            "corrupt": self.metric(corrupt.final_logits, self.task).detach().cpu(),
        }

    # --- running cells -----------------------------------------------------------------------
    def run(
        self, groups: Sequence[CellGroup], progress: Callable[[int], None] | None = None
    ) -> Float[torch.Tensor, "group example"]:
        """Metric values of every cell group (rows) for every example (columns)."""
        self.ensure_prepared(groups)
        assert self._base is not None
        started = time.perf_counter()
        results: dict[int, torch.Tensor] = {}
        buckets: dict[tuple, list[int]] = defaultdict(list)
        for index, group in enumerate(groups):
            signature = tuple(sorted(cell.site for cell in group))
            buckets[(self._start(group), signature)].append(index)
        unpatched = self.metric(self._base.final_logits, self.task).detach().cpu()
        self._count_naive(len(groups))
        for (start, _), indices in sorted(buckets.items(), key=lambda item: item[0][0]):
            if start[0] < 0:
                for index in indices:
                    results[index] = self._run_full(groups[index])
                    if progress is not None:
                        progress(1)
                continue
            live = {index: self._live_rows(groups[index]) for index in indices}
            for index in [i for i in indices if not live[i].any()]:
                results[index] = unpatched
                self.cost.noop_rows += self.examples
                if progress is not None:
                    progress(1)
            for chunk in self._pack([i for i in indices if live[i].any()], live, start[1]):
                values = self._run_suffix([groups[i] for i in chunk], [live[i] for i in chunk], start)
                results.update(zip(chunk, values, strict=True))
                if progress is not None:
                    progress(len(chunk))
        self.cost.seconds += time.perf_counter() - started
        return torch.stack([results[i] for i in range(len(groups))])

    def _live_rows(self, group: CellGroup) -> Bool[torch.Tensor, " example"]:
        """Examples on which the group's patch changes something: the others need no forward.

        Where the source value equals the base value at every patched entry (a prompt prefix the
        clean and corrupt prompts share, a position whose token the corruption leaves alone in
        block 0), the patched run *is* the unpatched base run, so its metric is the base run's.
        """
        live = torch.ones(self.examples, dtype=torch.bool)
        if not self.skip_noop_rows:
            return live
        assert self._base is not None and self._source is not None
        live.zero_()
        for cell in group:
            site = self.model.site(cell.site)
            source, base = self._source.cache[site.name], self._base.cache[site.name]
            mask = selection_mask(cell, site, source.shape, 0).to(source.device)
            live |= ((source != base) & mask).flatten(1).any(1).cpu() & _row_selector(cell, self.examples)
        return live

    def _pack(self, indices: list[int], live: dict[int, torch.Tensor], start_pos: int) -> Iterator[list[int]]:
        """Consecutive groups whose live rows fill a forward of at most the row budget."""
        budget = self._rows_per_forward(start_pos)
        chunk: list[int] = []
        rows = 0
        for index in indices:
            count = int(live[index].sum())
            if chunk and rows + count > budget:
                yield chunk
                chunk, rows = [], 0
            chunk.append(index)
            rows += count
        if chunk:
            yield chunk

    def _rows_per_forward(self, start_pos: int) -> int:
        if self.max_rows is not None:
            return self.max_rows
        dims = self.model.dims
        positions = self.seq_len - start_pos
        bytes_per_row = (
            4 * positions * (4 * dims.d_model + 3 * dims.d_mlp + dims.n_heads * self.seq_len) + 4 * dims.d_vocab
        )
        return max(1, int(self.memory_budget // bytes_per_row))

    def _count_forward(self, rows: int, start_pos: int, blocks: int) -> None:
        self.cost.forward_passes += 1
        self.cost.flops += forward_flops(
            self.model.dims, self.model.arch.gated_mlp, rows, self.seq_len, start_pos, blocks, 1
        )

    def _count_naive(self, groups: int) -> None:
        """What a naive sweep spends on ``groups``: one full forward each, logits everywhere."""
        dims = self.model.dims
        self.cost.naive_forward_passes += groups
        self.cost.naive_flops += groups * forward_flops(
            dims, self.model.arch.gated_mlp, self.examples, self.seq_len, 0, dims.n_layers, self.seq_len
        )

    def _run_suffix(
        self, chunk: list[CellGroup], live: list[torch.Tensor], start: tuple[int, int]
    ) -> list[Float[torch.Tensor, " example"]]:
        """One forward over the live rows of ``chunk``; the other rows take the base run's logits."""
        assert self._base is not None
        start_layer, start_pos = start
        batch_rows = Rows.of(live)
        logits = self._suffix_forward(chunk, batch_rows, start_layer, start_pos)
        self._count_forward(len(batch_rows.example), start_pos, self.model.dims.n_layers - start_layer)
        self.cost.noop_rows += sum(self.examples - int(rows.sum()) for rows in live)
        values = []
        for g, rows in enumerate(live):
            final = self._base.final_logits.clone()
            final[rows.to(final.device)] = logits[batch_rows.group.to(logits.device) == g].to(final.dtype)
            values.append(self.metric(final, self.task).detach().cpu())
        return values

    def _run_full(self, group: CellGroup) -> Float[torch.Tensor, " example"]:
        logits = self._full_forward(group)
        self._count_forward(self.examples, 0, self.model.dims.n_layers)
        return self.metric(logits, self.task).detach().cpu()

    def _cell_patches(
        self, chunk: list[CellGroup], rows: Rows, start_layer: int, start_pos: int
    ) -> tuple[MaskedPatch | None, list[MaskedPatch]]:
        """The entry patch (residual at the start block) and in-block patches of the forward's rows.

        Cells on ``resid_pre[L]`` and ``resid_post[L-1]`` are the same tensor, the start block's input:
        both go into the one entry patch.
        """
        entry_name = self._entry_site(start_layer)
        masks: dict[str, list[torch.Tensor]] = {}
        row_masks: dict[str, torch.Tensor] = {}
        sites: dict[str, Site] = {}
        for g, group in enumerate(chunk):
            for cell in group:
                site = self.model.site(cell.site)
                key = entry_name if is_entry(site) and entry_layer(site) == start_layer else site.name
                sites.setdefault(key, site)
                shape = self._sliced_source(sites[key], start_pos).shape
                mask = selection_mask(cell, site, shape, start_pos)
                if cell.rows is None:
                    stack = masks.setdefault(key, [torch.zeros(shape[1:], dtype=torch.bool)] * len(chunk))
                    stack[g] = stack[g] | mask
                else:  # a cell for some examples only (named positions): its mask goes to their rows
                    per_row = row_masks.setdefault(key, torch.zeros(len(rows.group), *shape[1:], dtype=torch.bool))
                    hit = (rows.group == g) & _row_selector(cell, self.examples)[rows.example]
                    per_row[hit] |= mask
        patches = {}
        for key in masks.keys() | row_masks.keys():
            source = self._sliced_source(sites[key], start_pos)
            shared = torch.stack(masks[key])[rows.group] if key in masks else None
            mask = row_masks[key] if shared is None else shared | row_masks.get(key, torch.zeros_like(shared))
            patches[key] = MaskedPatch(site=key, source=source[rows.example.to(source.device)], mask=mask)
        return patches.pop(entry_name, None), list(patches.values())

    def _sliced_source(self, site: Site, start_pos: int) -> torch.Tensor:
        assert self._source is not None
        value = self._source.cache[site.name]
        return (
            value
            if site.kind == "pattern"
            else value.narrow(site.pos_axis, start_pos, value.shape[site.pos_axis] - start_pos)
        )

    def _suffix_forward(
        self, chunk: list[CellGroup], batch_rows: Rows, start_layer: int, start_pos: int
    ) -> Float[torch.Tensor, "row vocab"]:
        assert self._base is not None
        base = self._base
        entry, in_block = self._cell_patches(chunk, batch_rows, start_layer, start_pos)
        entry_name = self._entry_site(start_layer)
        rows = batch_rows.example.to(self.model.device)
        resid = base.cache[entry_name][rows, start_pos:]
        if entry is not None:
            resid = entry.apply(resid, self.model.site(entry_name))
        past = None
        if start_pos > 0:
            assert base.keys_values is not None
            past = kv.cache_from([(k[rows, :, :start_pos], v[rows, :, :start_pos]) for k, v in base.keys_values])
        batch = base.batch
        # the model's lock spans the skipped blocks too: no other thread may run a forward meanwhile
        with (
            torch.no_grad(),
            self.model.lock,
            self.model.arch.start_at(start_layer, resid),
            self.model.hooks(in_block) as session,
        ):
            output = self.model.call(
                session,
                input_ids=batch.input_ids[rows, start_pos:],
                attention_mask=batch.attention_mask[rows],
                position_ids=batch.position_ids[rows, start_pos:],
                **kv.cache_kwargs(past),
                use_cache=past is not None,
                logits_to_keep=1,
            )
        return output.logits[:, -1]

    def _full_forward(self, group: CellGroup) -> Float[torch.Tensor, "example vocab"]:
        """Cells upstream of block 0 (or of a base intervention): a full forward with the base run's interventions."""
        assert self._base is not None and self._source is not None
        patches = [
            _plain_patch(cell, self.model.site(cell.site), self._source.cache[cell.site], self.examples) for cell in group
        ]
        with torch.no_grad(), self.model.hooks([*self._base.interventions, *patches]) as session:
            logits = self.model.forward(self._base.batch, session, logits_to_keep=1)
        return logits[:, -1]


def _plain_patch(cell: Cell, site: Site, source: torch.Tensor, examples: int) -> Intervention:
    """A patch of ``cell`` over full positions, in every row or in the cell's ``rows``."""
    mask = selection_mask(cell, site, source.shape, 0).unsqueeze(0)
    if cell.rows is not None:
        mask = mask & _row_selector(cell, examples).view(-1, *[1] * (mask.ndim - 1))
    return MaskedPatch(site=site.name, source=source, mask=mask)


def _row_selector(cell: Cell, examples: int) -> Bool[torch.Tensor, " example"]:
    """The examples a cell patches: all, or its ``rows``."""
    if cell.rows is None:
        return torch.ones(examples, dtype=torch.bool)
    selector = torch.zeros(examples, dtype=torch.bool)
    selector[list(cell.rows)] = True
    return selector
