#!/bin/sh
# Makes bench/.peers-venv: LightningCLI 2.6 with a CPU-only torch, for `make bench-peers` only.
#
# A plain `pip install torch` resolves the CUDA build (torch 2.14.1 from this machine's extra index)
# and pulls about 2 GB of nvidia-* wheels, and that build cannot even be imported without them. So
# torch is asked for by its +cpu local version: first from PyTorch's CPU index, then from whatever
# pip's configured indexes and find-links hold (this machine's /opt/wheels has 2.13.0+cpu; the CPU
# index is not reachable from it). The install fails if any nvidia-* package came in anyway.
set -eu
VENV=${1:-bench/.peers-venv}
PYTHON=${PYTHON:-python3}
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check --quiet"
installed=""
for torch in "torch==2.14.1+cpu" "torch==2.13.0+cpu"; do
    for index in "--extra-index-url https://download.pytorch.org/whl/cpu" ""; do
        # shellcheck disable=SC2086
        if $PIP install --timeout 20 --retries 1 $index "$torch" 2>/dev/null; then
            installed=$torch
            break 2
        fi
    done
done
if [ -z "$installed" ]; then
    echo "bench/peers/install.sh: no CPU build of torch reachable (tried 2.14.1+cpu and 2.13.0+cpu, from" >&2
    echo "  https://download.pytorch.org/whl/cpu and pip's configured indexes)" >&2
    exit 4
fi
$PIP install "lightning>=2.6,<2.7" "jsonargparse[signatures]>=4.27" 2>/dev/null
if $VENV/bin/python -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "bench/peers/install.sh: CUDA wheels (nvidia-*) were installed; the benchmark wants CPU torch" >&2
    exit 4
fi
$VENV/bin/python -c "import lightning, torch; print(f'bench/.peers-venv: torch {torch.__version__}, lightning {lightning.__version__}')"
