#!/usr/bin/env bash
# VNN-COMP run_instance.sh: "v1", category, ONNX path, VNN-LIB path, result file, timeout (seconds).
# Runs `nnxform verify ONNX VNNLIB --timeout T --result RESULT`; the result file's first line is sat, unsat,
# timeout or unknown (sat: the assignment follows). A run that writes no answer leaves "error" there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_version "${1:-}"
check_arguments 6 "$0 v1 CATEGORY ONNX VNNLIB RESULT TIMEOUT" "$@"
onnx=$3 vnnlib=$4 result=$5 limit=$6
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f "$PID_FILE"' EXIT
for input in onnx vnnlib; do  # gzipped benchmark files are unpacked beside the run
    if [[ "${!input}" == *.gz ]]; then
        name=$(basename "${!input}" .gz)
        gzip -dc "${!input}" > "$work/$name"
        printf -v "$input" '%s' "$work/$name"
    fi
done
rm -f "$result"
# nnxform keeps to its --timeout; coreutils' timeout is the net, 30 s later (the competition kills at T + 60 s)
timeout --kill-after=10 "$(awk -v t="$limit" 'BEGIN { print t + 30 }')" \
    "$NNXFORM" verify "$onnx" "$vnnlib" --timeout "$limit" --result "$result" &
echo $! > "$PID_FILE"
status=0
wait $! || status=$?
answer=$(head -n 1 "$result" 2> /dev/null | tr -d '[:space:]' || true)
case "$answer" in
    sat | unsat | timeout | unknown) ;;
    *)
        [[ $status -eq 124 ]] && answer=timeout || answer=error
        echo "nnxform verify exited with $status without an answer: $answer" >&2
        echo "$answer" > "$result"
        ;;
esac
echo "$answer"
