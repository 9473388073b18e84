#!/usr/bin/env bash
# Submit one command as a multi-node SLURM job: sbatch launch/slurm.sbatch with the flags given.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/_lib.sh
. "$here/_lib.sh"

usage() {
    cat <<EOF
Usage: $NJ_PROG --nodes N [--gpus-per-node G] [--partition P] [--time T] [--account A]
                [--job-name J] [--output PATTERN] [--cpus-per-task C] [--port PORT]
                [--sbatch-arg ARG ...] [--dry-run] -- COMMAND [ARG...]

Submit launch/slurm.sbatch with sbatch: N nodes, one task per node (each process owns all
the GPUs of its node), every task running COMMAND with NEURONJAX_COORDINATOR (first node of
the job), NEURONJAX_NUM_PROCESSES and NEURONJAX_PROCESS_ID set. Process 0 writes the
results. The job starts in the directory you submit from (sbatch's default): submit from
the repository root so that relative config paths resolve.

Options:
  --nodes N            number of nodes = number of processes (required)
  --gpus-per-node G    sbatch --gpus-per-node=G (clusters that want --gres: --sbatch-arg)
  --partition P        sbatch --partition=P
  --time T             sbatch --time=T (e.g. 04:00:00)
  --account A          sbatch --account=A
  --job-name J         sbatch --job-name=J (default neuronjax)
  --output PATTERN     sbatch --output=PATTERN (e.g. logs/%x-%j.out; sbatch's default is
                       slurm-%j.out)
  --cpus-per-task C    sbatch --cpus-per-task=C (the default of 1 CPU can starve the host
                       side: give the node's cores)
  --port PORT          coordinator port (default 20000 + job id mod 20000), passed as
                       sbatch --export=ALL,NEURONJAX_PORT=PORT
  --sbatch-arg ARG     any other sbatch option, as one word (repeatable), e.g.
                       --sbatch-arg=--qos=high --sbatch-arg=--exclusive
  --dry-run            print the sbatch command line (shell-quoted, ready to paste),
                       submit nothing
  -h, --help           this text

Example:
  $NJ_PROG --nodes 2 --gpus-per-node 8 --partition gpu --time 04:00:00 -- \\
      neuronjax run configs/default.yaml name=two-nodes
EOF
}

nodes="" gpus="" partition="" time_limit="" account="" job_name=neuronjax output="" cpus="" port=""
dry_run=0
extra=() cmd=()
while (($#)); do
    case $1 in
        --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    esac
    case $1 in
        --nodes) nj_need_value "$@"; nodes=$2; shift 2 ;;
        --gpus-per-node) nj_need_value "$@"; gpus=$2; shift 2 ;;
        --partition) nj_need_value "$@"; partition=$2; shift 2 ;;
        --time) nj_need_value "$@"; time_limit=$2; shift 2 ;;
        --account) nj_need_value "$@"; account=$2; shift 2 ;;
        --job-name) nj_need_value "$@"; job_name=$2; shift 2 ;;
        --output) nj_need_value "$@"; output=$2; shift 2 ;;
        --cpus-per-task) nj_need_value "$@"; cpus=$2; shift 2 ;;
        --port) nj_need_value "$@"; port=$2; shift 2 ;;
        --sbatch-arg)
            # Its value is itself a flag: only its presence is checked.
            if (($# < 2)) || [[ -z $2 ]]; then
                nj_die "--sbatch-arg needs a value"
            fi
            extra+=("$2")
            shift 2
            ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; cmd=("$@"); break ;;
        -*) nj_die "unknown flag: $1" ;;
        *) nj_die "unexpected argument '$1' (the command goes after --)" ;;
    esac
done

[[ -n $nodes ]] || nj_die "missing required flag --nodes (the number of nodes)"
nj_check_uint --nodes "$nodes"
[[ -z $gpus ]] || nj_check_uint --gpus-per-node "$gpus"
[[ -z $cpus ]] || nj_check_uint --cpus-per-task "$cpus"
if [[ -n $port ]]; then
    nj_check_uint --port "$port"
    ((10#$port <= 65535)) || nj_die "--port expects a port number up to 65535, got '$port'"
fi
((${#cmd[@]})) || nj_die "no command given after --"

args=(sbatch "--job-name=$job_name" "--nodes=$((10#$nodes))" --ntasks-per-node=1)
[[ -z $gpus ]] || args+=("--gpus-per-node=$((10#$gpus))")
[[ -z $partition ]] || args+=("--partition=$partition")
[[ -z $time_limit ]] || args+=("--time=$time_limit")
[[ -z $account ]] || args+=("--account=$account")
[[ -z $output ]] || args+=("--output=$output")
[[ -z $cpus ]] || args+=("--cpus-per-task=$((10#$cpus))")
[[ -z $port ]] || args+=("--export=ALL,NEURONJAX_PORT=$((10#$port))")
args+=(${extra[@]+"${extra[@]}"} "$here/slurm.sbatch" "${cmd[@]}")

if ((dry_run)); then
    printf '%s\n' "$(nj_join "${args[@]}")"
    exit 0
fi
if ! command -v sbatch >/dev/null 2>&1; then
    nj_fail "sbatch not found on PATH (run this on a SLURM login node, or use --dry-run)"
fi
exec "${args[@]}"
