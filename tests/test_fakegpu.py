"""The simulated GPU of ``tests/fakegpu.py`` refuses what CUDA refuses and computes the CPU numbers.

It registers a device and patches torch for the whole process, so it runs in a subprocess here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, os
os.environ["HF_HUB_OFFLINE"] = "1"
import numpy as np
import torch
from tests import fakegpu
fakegpu.pytest_configure(None)
import interp

def outcome(action):
    try:
        action()
    except (fakegpu.DeviceMixError, TypeError) as error:
        return type(error).__name__
    return "allowed"

x = torch.arange(6.0).to("fakegpu")
cpu = interp.load_model("tiny-llama")
gpu = interp.load_model("tiny-llama", device="fakegpu")
prompt = "When Mary and John went to the store"
print(json.dumps({
    "devices": [str(x.device), str((x * 2).device), str(gpu.device)],
    "values": [float(x.sum()), x[torch.tensor([0, 2])].tolist(), x.cpu().numpy().tolist()],
    "cpu operand": outcome(lambda: x + torch.ones(6)),
    "cpu scalar": outcome(lambda: x + torch.tensor(1.0)),
    "cpu index of a device tensor": outcome(lambda: x[torch.tensor([1])]),
    "device index of a cpu tensor": outcome(lambda: torch.zeros(6)[torch.tensor([1]).to("fakegpu")]),
    "numpy": outcome(lambda: np.asarray(x)),
    "cpu generator": outcome(lambda: torch.randn(2, generator=torch.Generator().manual_seed(0), device="fakegpu")),
    "device generator": outcome(lambda: torch.randn(2, generator=torch.Generator("fakegpu").manual_seed(0), device="fakegpu")),
    "logits agree": torch.allclose(gpu.run(prompt).cpu(), cpu.run(prompt), rtol=1e-5, atol=1e-5),
}))
"""


def test_the_simulated_device_refuses_what_cuda_refuses_and_computes_cpu_numbers() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "devices": ["fakegpu:0", "fakegpu:0", "fakegpu:0"],
        "values": [15.0, [0.0, 2.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]],
        "cpu operand": "DeviceMixError",
        "cpu scalar": "allowed",
        "cpu index of a device tensor": "allowed",
        "device index of a cpu tensor": "DeviceMixError",
        "numpy": "TypeError",
        "cpu generator": "DeviceMixError",
        "device generator": "allowed",
        "logits agree": True,  # up to rounding: the mode runs decomposed operations
    }
