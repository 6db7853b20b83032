# Sourced by the VNN-COMP scripts: the nnxform to run and where a run's process id is kept.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n "${NNXFORM:-}" ]]; then :
elif [[ -x "$ROOT/.venv/bin/nnxform" ]]; then NNXFORM="$ROOT/.venv/bin/nnxform"
else NNXFORM=$(command -v nnxform || true)
fi
PID_FILE="${TMPDIR:-/tmp}/nnxform-vnncomp.pid"

check_version() {
    if [[ "$1" != v1 ]]; then
        echo "expected the version string 'v1' as first argument, got '$1'" >&2
        exit 1
    fi
}

check_arguments() {  # the count the script takes, the usage line, then the script's arguments
    local count=$1 usage=$2
    shift 2
    if [[ $# -ne $count ]]; then
        echo "usage: $usage" >&2
        exit 1
    fi
}
