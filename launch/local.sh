#!/usr/bin/env bash
# N processes of one command on this machine, joined through jax.distributed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/_lib.sh
. "$here/_lib.sh"

usage() {
    cat <<EOF
Usage: $NJ_PROG -n N [--port P] [--devices-per-process K] [--dry-run] -- COMMAND [ARG...]

Start N processes of COMMAND on this machine, process i with
  NEURONJAX_COORDINATOR=127.0.0.1:P NEURONJAX_NUM_PROCESSES=N NEURONJAX_PROCESS_ID=i
so that each neuronjax command joins the others through jax.distributed (process 0 writes
the results). Every output line of process i (stdout and stderr) is printed with the prefix
'[i] '; PYTHONUNBUFFERED=1 is set so that Python output shows up as it is written.
Waits for all processes. As soon as one fails, the others are stopped (SIGTERM to their
process groups) and the exit status is the failed process's.

Options:
  -n, --num-processes N      number of processes (required)
  --port P                   coordinator port on 127.0.0.1 (default 8476)
  --devices-per-process K    CPU only: JAX_PLATFORMS=cpu and K host devices per process
                             (XLA_FLAGS=--xla_force_host_platform_device_count=K, appended
                             to the XLA_FLAGS already set, replacing an earlier device count)
  --dry-run                  print one line per process (its variables and the command,
                             shell-quoted, ready to paste; without PYTHONUNBUFFERED, which
                             only matters under the prefixing) and start nothing
  -h, --help                 this text

Example:
  $NJ_PROG -n 2 --devices-per-process 4 -- neuronjax run configs/default.yaml name=two-procs
EOF
}

num="" port=8476 devices="" dry_run=0
cmd=()
while (($#)); do
    case $1 in
        --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    esac
    case $1 in
        -n | --num-processes) nj_need_value "$@"; num=$2; shift 2 ;;
        --port) nj_need_value "$@"; port=$2; shift 2 ;;
        --devices-per-process) nj_need_value "$@"; devices=$2; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; cmd=("$@"); break ;;
        -*) nj_die "unknown flag: $1" ;;
        *) nj_die "unexpected argument '$1' (the command goes after --)" ;;
    esac
done

[[ -n $num ]] || nj_die "missing required flag -n (the number of processes)"
nj_check_uint -n "$num"
nj_check_uint --port "$port"
((10#$port <= 65535)) || nj_die "--port expects a port number up to 65535, got '$port'"
[[ -z $devices ]] || nj_check_uint --devices-per-process "$devices"
((${#cmd[@]})) || nj_die "no command given after --"
num=$((10#$num)) port=$((10#$port))

# Variables common to every process.
common=("NEURONJAX_COORDINATOR=127.0.0.1:$port" "NEURONJAX_NUM_PROCESSES=$num")
extra=()
if [[ -n $devices ]]; then
    xla=()
    read -r -a old <<<"${XLA_FLAGS:-}"
    for flag in ${old[@]+"${old[@]}"}; do
        [[ $flag == --xla_force_host_platform_device_count=* ]] || xla+=("$flag")
    done
    xla+=("--xla_force_host_platform_device_count=$((10#$devices))")
    extra=("JAX_PLATFORMS=cpu" "XLA_FLAGS=${xla[*]}")
fi

# The variables of process $1, one NAME=VALUE per array element, in $assigns.
process_vars() {
    assigns=("${common[@]}" "NEURONJAX_PROCESS_ID=$1" ${extra[@]+"${extra[@]}"})
}

if ((dry_run)); then
    for ((i = 0; i < num; i++)); do
        process_vars "$i"
        line=""
        for a in "${assigns[@]}"; do
            line+="${a%%=*}=$(nj_quote "${a#*=}") "
        done
        printf '%s%s\n' "$line" "$(nj_join "${cmd[@]}")"
    done
    exit 0
fi

prefix() {
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        printf '[%s] %s\n' "$1" "$line"
    done
}

# Job control: every process (with its output filter) gets its own process group, so that a
# failure or Ctrl-C can stop the whole of it, children included.
set -m
pids=()
stop_all() {
    local p
    for p in ${pids[@]+"${pids[@]}"}; do
        kill -TERM -- "-$p" 2>/dev/null || true
    done
}
trap 'stop_all; wait; exit 130' INT
trap 'stop_all; wait; exit 143' TERM

for ((i = 0; i < num; i++)); do
    process_vars "$i"
    (
        set +e
        export "${assigns[@]}"
        export PYTHONUNBUFFERED=1
        "${cmd[@]}" 2>&1 | prefix "$i"
        exit "${PIPESTATUS[0]}"
    ) &
    pids+=("$!")
done
set +m # the groups are made; without job control the shell prints no "Terminated" notices

# Poll rather than `wait -n`: it works the same on every bash version. The shell reaps a
# finished process while it waits for `sleep`, after which `kill -0` fails and `wait PID`
# returns the stored exit status.
status=0
live=("${pids[@]}")
while ((${#live[@]})); do
    still=()
    for p in "${live[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            still+=("$p")
            continue
        fi
        rc=0
        wait "$p" || rc=$?
        if ((rc != 0 && status == 0)); then
            status=$rc
            stop_all
        fi
    done
    live=(${still[@]+"${still[@]}"})
    ((${#live[@]} == 0)) || sleep 0.1
done
exit "$status"
