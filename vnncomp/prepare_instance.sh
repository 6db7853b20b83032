#!/usr/bin/env bash
# VNN-COMP prepare_instance.sh: "v1", category, ONNX path, VNN-LIB path. No analysis: checks that nnxform verify
# exists and the files are there, and ends a run of run_instance.sh left over from an earlier instance.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_version "${1:-}"
check_arguments 4 "$0 v1 CATEGORY ONNX VNNLIB" "$@"
for file in "$3" "$4"; do
    [[ -f "$file" ]] || { echo "no such file: $file" >&2; exit 1; }
done
if [[ -z "$NNXFORM" ]] || ! "$NNXFORM" verify --help > /dev/null 2>&1; then
    echo "nnxform verify is not available (run install_tool.sh v1, or set NNXFORM)" >&2
    exit 1
fi
if [[ -f "$PID_FILE" ]]; then
    pid=$(cat "$PID_FILE")
    if [[ "$pid" =~ ^[0-9]+$ ]] && grep -qa nnxform "/proc/$pid/cmdline" 2> /dev/null; then
        kill -TERM "$pid" 2> /dev/null || true
        sleep 1
        kill -KILL "$pid" 2> /dev/null || true
    fi
    rm -f "$PID_FILE"
fi
