#!/usr/bin/env bash
# VNN-COMP install_tool.sh: one argument, the version string "v1". Installs nnxform from this repository into
# its .venv (python3 >= 3.10 with venv and pip; no licence, no GPU).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_version "${1:-}"
python3 -m venv "$ROOT/.venv"
"$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
"$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT"
"$ROOT/.venv/bin/nnxform" --help > /dev/null
echo "nnxform installed in $ROOT/.venv"
