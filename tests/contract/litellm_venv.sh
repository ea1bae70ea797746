#!/usr/bin/env bash
# Build (once) the venv holding the real LiteLLM proxy that the contract test runs, and print its
# python as the last line.
#
#   tests/contract/litellm_venv.sh         -> .../venv-litellm-1.109.1/bin/python
#
# The venv lives outside the repo, in ${THORFLEET_CACHE:-$HOME/.cache/thorfleet}, so a fresh
# checkout on the same machine (CI) reuses it. It is rebuilt when its stamp, written last, is
# missing or differs: a build that died half way is redone, not trusted. Progress goes to stderr.
set -euo pipefail

LITELLM_VERSION=1.109.1
PYTHON=${THORFLEET_LITELLM_PYTHON:-python3}
# Two of litellm 1.109.1's requirements are newer than the package index here serves:
# certifi>=2026.10.19 (only a CA bundle) and litellm-proxy-extras==0.4.113 (Prisma schema and
# migrations, used only with a database, which the contract test runs without). They are
# installed unpinned; everything else as litellm's [proxy] extra requires it.
UNPINNED=(certifi litellm-proxy-extras)

CACHE=${THORFLEET_CACHE:-$HOME/.cache/thorfleet}
VENV=$CACHE/venv-litellm-$LITELLM_VERSION
STAMP=$VENV/.thorfleet-complete
RECIPE="litellm[proxy]==$LITELLM_VERSION unpinned: ${UNPINNED[*]}"

if [[ ! -f $STAMP || $(<"$STAMP") != "$RECIPE" ]]; then
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip packaging >&2
    "$VENV/bin/pip" install -q --no-deps "litellm==$LITELLM_VERSION" >&2
    # litellm's own metadata, as a requirements file: the [proxy] extra's markers evaluated here.
    "$VENV/bin/python" - "${UNPINNED[@]}" >"$VENV/litellm-requirements.txt" <<'PY'
import sys
from importlib.metadata import requires

from packaging.requirements import Requirement

for line in requires("litellm"):
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": "proxy"}):
        continue
    req.marker = None
    print(req.name if req.name in sys.argv[1:] else req)
PY
    "$VENV/bin/pip" install -q -r "$VENV/litellm-requirements.txt" >&2
    echo "$RECIPE" >"$STAMP"
fi
echo "$VENV/bin/python"
