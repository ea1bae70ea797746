#!/usr/bin/env bash
# Build (once) a venv in which the pinned vLLM's `vllm serve` argument parser
# imports and runs on a CPU-only machine, and print its python as the last line.
#
#   tests/contract/vllm_venv.sh            -> .../venv-vllm-0.31.0/bin/python
#
# The venv lives outside the repo, in ${THORFLEET_CACHE:-$HOME/.cache/thorfleet},
# so a fresh checkout on the same machine (CI) reuses it. It is rebuilt only
# when its stamp is missing or differs (a build that died half way leaves no
# stamp). All progress goes to stderr; stdout carries only the python path.
#
# How: CPU torch (a local wheel here), the vLLM wheel with --no-deps (its CUDA
# dependencies -- flashinfer, cutlass, triton ... -- are not wanted), and only
# the packages that the `vllm serve` import chain needs, each held to the
# versions that vLLM's own metadata requires. vLLM's compiled CUDA kernels,
# which cannot be loaded here anyway (their CUDA libraries are absent), are
# deleted to save ~600 MB.
set -euo pipefail

VLLM_VERSION=0.31.0   # nvcr.io/nvidia/vllm:26.10-py3 carries vLLM 0.31.0
TORCH_VERSION=2.13.0  # must equal vLLM's torch pin; a +cpu wheel lies in pip's find-links here
# torch's local CPU wheel is for CPython 3.11
PYTHON=${THORFLEET_VLLM_PYTHON:-$(command -v python3.11 || command -v python3)}

# What `from vllm.entrypoints.cli.main import main` and the serve parser import,
# found by trying (ModuleNotFoundError one at a time). Versions come from
# vLLM's Requires-Dist (used as a constraints file).
DEPS=(
    aiohttp cachetools cbor2 cloudpickle einops fastapi llguidance msgspec numpy
    openai oss-harmony packaging partial-json-parser pillow prometheus_client
    psutil py-cpuinfo pybase64 pydantic pyzmq regex requests transformers urllib3
    uvicorn uvloop watchfiles
)
# Imported by vLLM, but their own dependencies are not needed for parsing
# (xgrammar would pull in ~1 GB of triton).
NODEPS=(xgrammar apache-tvm-ffi)

CACHE=${THORFLEET_CACHE:-$HOME/.cache/thorfleet}
VENV=$CACHE/venv-vllm-$VLLM_VERSION
STAMP=$VENV/.thorfleet-complete
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
WANT="vllm=$VLLM_VERSION torch=$TORCH_VERSION python=$PYVER deps=${DEPS[*]} nodeps=${NODEPS[*]} rev=2"

log() { printf '[vllm_venv] %s\n' "$*" >&2; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.venv-vllm-$VLLM_VERSION.lock"
flock 9  # two test sessions must not build the same venv at once

if [[ -f $STAMP && "$(cat "$STAMP")" == "$WANT" && -x $VENV/bin/python ]]; then
    log "reusing $VENV"
    echo "$VENV/bin/python"
    exit 0
fi

start=$SECONDS
log "building $VENV (vLLM $VLLM_VERSION, CPU torch $TORCH_VERSION)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
pip_() { "$PY" -m pip --disable-pip-version-check --no-input -q "$@" >&2; }

# 1. vLLM itself, without its dependencies; its metadata then gives the pins.
log "pip will report vLLM requirements \"not installed\": they are left out on purpose"
pip_ install --no-deps "vllm==$VLLM_VERSION"
"$PY" - >"$VENV/vllm-constraints.txt" <<'EOF'
import importlib.metadata as md
import re

for req in md.requires("vllm") or []:
    if "extra ==" in req:
        continue
    # constraints files take no extras
    print(re.sub(r"\[[^\]]*\]", "", req, count=1))
EOF

# 2. CPU torch (PyPI's plain torch is the CUDA build, several GB with its
#    nvidia-* wheels), then the import chain's packages.
if ! pip_ install -c "$VENV/vllm-constraints.txt" "torch==$TORCH_VERSION+cpu"; then
    log "WARNING: no torch $TORCH_VERSION+cpu wheel found; installing PyPI's torch==$TORCH_VERSION"
    pip_ install -c "$VENV/vllm-constraints.txt" "torch==$TORCH_VERSION"
fi
pip_ install -c "$VENV/vllm-constraints.txt" "torch==$TORCH_VERSION" "${DEPS[@]}"
pip_ install --no-deps -c "$VENV/vllm-constraints.txt" "${NODEPS[@]}"

# 3. Drop vLLM's CUDA kernels that cannot load here (missing CUDA libraries).
if command -v ldd >/dev/null; then
    site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    torchlib=$site/torch/lib
    while IFS= read -r -d '' so; do
        deps=$(LD_LIBRARY_PATH=$torchlib ldd "$so" 2>/dev/null || true)
        if [[ $deps == *"not found"* ]]; then
            rm -f "$so"
        fi
    done < <(find "$site/vllm" -name '*.so' -print0)
fi

# 4. Prove the parser runs before stamping.
info=$("$PY" "$HERE/vllm_parse.py" --info)
log "parser ok: $info"
case $info in
    *"\"vllm\": \"$VLLM_VERSION\""*) ;;
    *) log "ERROR: venv reports $info, wanted vLLM $VLLM_VERSION"; exit 1 ;;
esac

printf '%s' "$WANT" >"$STAMP"
log "built in $((SECONDS - start)) s, $(du -sh "$VENV" | cut -f1)"
echo "$PY"
