#!/usr/bin/env bash
# Idempotent set-up: Debian packages, then a .venv with the pinned requirements.
# Does nothing (in about a second) when everything is already in place: the venv carries a
# stamp keyed on the hash of the requirement files and the Debian package list.
#
# Environment:
#   TORCH=cpu   (default) the CPU wheel of torch, never a multi-GB CUDA build
#   TORCH=cuda  the default PyPI torch build (CUDA on Linux), for rendering data on a GPU
#   PYTHON=...  the interpreter for the venv (default python3; 3.11 or newer)
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH="${TORCH:-cpu}"
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.setup-stamp"

say() { printf '[setup] %s\n' "$*"; }

# The project on the venv's import path, as `pip install -e .` would put it (a .pth file):
# `.venv/bin/python -m mla_core` then works from any folder, not only the repository's.
link_project() {
    "$VENV/bin/python" - "$PWD" <<'PY'
import pathlib, site, sys
target = pathlib.Path(site.getsitepackages()[0]) / "mla_video.pth"
if not target.is_file() or target.read_text().strip() != sys.argv[1]:
    target.write_text(sys.argv[1] + "\n")
PY
}

# --- Debian packages ---------------------------------------------------------------------
mapfile -t packages < <(grep -v '^\s*#' scripts/debian-packages.txt | grep -v '^\s*$')
if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    packages+=(python3-venv)
fi
missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=(sudo)
    else
        echo "error: missing Debian packages (${missing[*]}); run as root, or with sudo:" >&2
        echo "  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq \
        "${missing[@]}" >/dev/null
fi

# --- Python virtual environment ----------------------------------------------------------
want=$(cat requirements.txt requirements-test.txt scripts/debian-packages.txt | sha256sum | cut -c1-16)
want="$want-torch-$TORCH"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    link_project
    exit 0
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "error: $PYTHON is $("$PYTHON" --version 2>&1); Python 3.11 or newer is needed (set PYTHON=...)" >&2
    exit 1
}
[ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# Some machines list local package folders that do not exist; pip warns once per package.
quiet_pip() { "${pip[@]}" "$@" 2>&1 | { grep -v 'is ignored: it is neither' || true; }; }

torch_pin=$(grep -E '^torch==' requirements.txt)
if [ "$TORCH" = cpu ]; then
    # A local wheel folder (PIP_FIND_LINKS) with the CPU build wins; otherwise PyTorch's CPU index.
    local_wheel=$(ls "${PIP_FIND_LINKS:-/opt/wheels}"/torch-"${torch_pin#torch==}"+cpu-*.whl 2>/dev/null | head -n1 || true)
    if [ -n "$local_wheel" ]; then
        say "installing $torch_pin (CPU) from $local_wheel"
        quiet_pip "$local_wheel"
    else
        say "installing $torch_pin (CPU) from download.pytorch.org/whl/cpu"
        quiet_pip "$torch_pin" --index-url https://download.pytorch.org/whl/cpu
    fi
elif [ "$TORCH" = cuda ]; then
    say "installing $torch_pin (default PyPI build, CUDA on Linux)"
    quiet_pip "$torch_pin"
else
    echo "error: TORCH=$TORCH is not allowed; use TORCH=cpu or TORCH=cuda" >&2
    exit 2
fi

say "installing the pinned requirements"
quiet_pip -r requirements.txt -r requirements-test.txt
"$VENV/bin/python" -c 'import torch, manim, transformers' # fail here, not later, if pip failed
link_project
echo "$want" >"$STAMP"
say "done"
