"""A slow, deterministic sweep for tests/runs/test_store.py's kill test (not a test module itself).

``python kill_helper.py ROOT RUN_ID N SLEEP`` creates run ``RUN_ID`` under ``ROOT`` (or resumes
it) and writes shards ``0..N-1`` of group ``"cells"``, printing each index on its own flushed line
once the shard is written and sleeping ``SLEEP`` seconds between shards, so that the test can
SIGKILL it part-way and then finish the sweep in-process. Every shard's content depends only on its
index, so an interrupted-and-resumed sweep must reproduce an uninterrupted one exactly. A run that
another process is writing makes it print the refusal to stderr and exit with status 3.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

# run against the checkout these tests belong to, not whichever interp is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd
import torch

from interp.runs import Run, RunLockedError, RunNotFoundError, RunStore

GROUP = "cells"


def config(n: int) -> dict[str, object]:
    return {"n_shards": n, "seed": 1234, "shape": [64, 96]}


def make_shard(index: int) -> tuple[dict[str, torch.Tensor], pd.DataFrame]:
    """Shard ``index``'s tensors (several dtypes) and table rows, a function of ``index`` alone."""
    gen = torch.Generator().manual_seed(1234 + index)
    effect = torch.randn(64, 96, generator=gen)
    tensors = {
        "effect": effect,
        "effect64": effect.double() / 3,
        "top": effect.argmax(dim=1),
        "half": effect.to(torch.bfloat16),
    }
    frame = pd.DataFrame(
        {"shard": index, "row": range(64), "value": effect[:, 0].double().numpy(), "tag": [f"s{index}"] * 64}
    )
    return tensors, frame


def sweep(run: Run, n: int, sleep: float, report: Callable[[int], None] = lambda i: None) -> None:
    """Write every shard of ``0..n-1`` that is not finished yet."""
    done = set(run.finished_shards(GROUP))
    for index in range(n):
        if index in done:
            continue
        tensors, frame = make_shard(index)
        run.write_shard(GROUP, index, tensors=tensors, frame=frame)
        report(index)
        time.sleep(sleep)


def main(root: str, run_id: str, n: int, sleep: float) -> None:
    store = RunStore(root)
    try:
        run = store.resume(run_id, config(n))
    except RunNotFoundError:
        run = store.create("killtest", config(n), model="none", run_id=run_id)
    except RunLockedError as refusal:
        print(refusal, file=sys.stderr, flush=True)
        sys.exit(3)
    print("started", flush=True)
    sweep(run, n, sleep, lambda i: print(i, flush=True))
    run.finish({"shards": n})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
