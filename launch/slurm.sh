#!/usr/bin/env bash
# Submit one command as a multi-node SLURM job: sbatch launch/slurm.sbatch with the flags given.
# With --sweep FILE: the sweep's points as a job array (one point per array task), then a job
# that gathers the table once the array has ended.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/_lib.sh
. "$here/_lib.sh"

usage() {
    cat <<EOF
Usage: $NJ_PROG --nodes N [--gpus-per-node G] [--partition P] [--time T] [--account A]
                [--job-name J] [--output PATTERN] [--cpus-per-task C] [--port PORT]
                [--sbatch-arg ARG ...] [--dry-run] -- COMMAND [ARG...]
       $NJ_PROG --sweep FILE [--max-running M] [the options above] [--dry-run]
                [-- SWEEP_ARG...]

Submit launch/slurm.sbatch with sbatch: N nodes, one task per node (each process owns all
the GPUs of its node), every task running COMMAND with NEURONJAX_COORDINATOR (first node of
the job), NEURONJAX_NUM_PROCESSES and NEURONJAX_PROCESS_ID set. Process 0 writes the
results. The job starts in the directory you submit from (sbatch's default): submit from
the repository root so that relative config paths resolve.

With --sweep FILE, two submissions: a job array of N points (--array=1-N, N counted by
\`neuronjax sweep FILE --count\`), array task I running, on its own nodes,
    neuronjax sweep FILE --point \$SLURM_ARRAY_TASK_ID [SWEEP_ARG...]
then a gather job on one node (no GPUs) that waits for the whole array, failed tasks
included (--dependency=afterany:ARRAY_JOB_ID), and runs
    neuronjax sweep FILE --gather [SWEEP_ARG...]
SWEEP_ARGs go to every one of these calls: key=value overrides, --quiet, --force.
\`neuronjax\` must be on PATH here and in the jobs (an activated environment: sbatch
passes it on).

Options:
  --nodes N            number of nodes = number of processes (required; with --sweep:
                       nodes per point, default 1)
  --gpus-per-node G    sbatch --gpus-per-node=G (clusters that want --gres: --sbatch-arg)
  --partition P        sbatch --partition=P
  --time T             sbatch --time=T (e.g. 04:00:00; with --sweep: per point)
  --account A          sbatch --account=A
  --job-name J         sbatch --job-name=J (default neuronjax; the gather job: J-gather)
  --output PATTERN     sbatch --output=PATTERN (e.g. logs/%x-%j.out, for arrays
                       logs/%x-%A_%a.out; sbatch's default is slurm-%j.out)
  --cpus-per-task C    sbatch --cpus-per-task=C (the default of 1 CPU can starve the host
                       side: give the node's cores)
  --port PORT          coordinator port (default 20000 + job id mod 20000), passed as
                       sbatch --export=ALL,NEURONJAX_PORT=PORT
  --sbatch-arg ARG     any other sbatch option, as one word (repeatable), e.g.
                       --sbatch-arg=--qos=high --sbatch-arg=--exclusive (with --sweep:
                       given to both jobs)
  --sweep FILE         submit the sweep FILE as a job array and a gather job
  --max-running M      with --sweep: at most M points at a time (--array=1-N%M)
  --dry-run            print the sbatch command line (shell-quoted, ready to paste),
                       submit nothing; with --sweep, the two lines of a shell snippet
                       that submits both jobs (the points are still counted)
  -h, --help           this text

Examples:
  $NJ_PROG --nodes 2 --gpus-per-node 8 --partition gpu --time 04:00:00 -- \\
      neuronjax run configs/default.yaml name=two-nodes
  $NJ_PROG --sweep configs/sweeps/example.yaml --gpus-per-node 1 --partition gpu \\
      --time 01:00:00 --output 'logs/%x-%A_%a.out' -- --quiet
EOF
}

# The sweep's job array and gather job, from args (the array's sbatch settings so far), queue
# (partition, time, account, output), extra, sweep, cmd (the SWEEP_ARGs).
submit_sweep() {
    local count_out count range
    if ! command -v neuronjax >/dev/null 2>&1; then
        nj_fail "neuronjax not found on PATH (activate the environment the points run in)"
    fi
    if ! count_out=$(neuronjax sweep "$sweep" --count ${cmd[@]+"${cmd[@]}"}); then
        nj_fail "could not count the points: neuronjax sweep $(nj_join "$sweep") --count failed (its error is above)"
    fi
    count=${count_out##*$'\n'}
    if ! [[ $count =~ ^[0-9]+$ ]] || ((10#$count < 1)); then
        nj_fail "neuronjax sweep $(nj_join "$sweep") --count printed '$count_out', not a number of points"
    fi
    range="1-$((10#$count))"
    [[ -z $max_running ]] || range+="%$((10#$max_running))"

    # Each array task's own bash reads its task id (1-based, as --dry-run numbers the points).
    # shellcheck disable=SC2016 # expanded by the array task's bash, not this one
    local point='exec neuronjax sweep "$0" --point "$SLURM_ARRAY_TASK_ID" "$@"'
    local array=("${args[0]}" --parsable "${args[@]:1}" "--array=$range" ${extra[@]+"${extra[@]}"}
        "$here/slurm.sbatch" bash -c "$point" "$sweep" ${cmd[@]+"${cmd[@]}"})
    local gather_head=(sbatch --parsable "--job-name=$job_name-gather" --nodes=1 --ntasks-per-node=1)
    local gather_tail=(${queue[@]+"${queue[@]}"} ${extra[@]+"${extra[@]}"}
        "$here/slurm.sbatch" neuronjax sweep "$sweep" --gather ${cmd[@]+"${cmd[@]}"})

    if ((dry_run)); then
        # shellcheck disable=SC2016 # printed for the shell that runs the snippet
        printf 'array_job=$(%s)\n' "$(nj_join "${array[@]}")"
        # shellcheck disable=SC2016
        printf '%s --dependency=afterany:"${array_job%%%%;*}" %s\n' "$(nj_join "${gather_head[@]}")" \
            "$(nj_join "${gather_tail[@]}")"
        return 0
    fi
    local array_out array_id gather_out
    array_out=$("${array[@]}") || nj_fail "sbatch did not take the job array (its error is above)"
    array_id=${array_out%%;*}
    [[ $array_id =~ ^[0-9]+$ ]] || nj_fail "sbatch --parsable printed '$array_out', not a job id"
    gather_out=$("${gather_head[@]}" "--dependency=afterany:$array_id" "${gather_tail[@]}") ||
        nj_fail "sbatch did not take the gather job; the array $array_id runs: gather afterwards with" \
            "neuronjax sweep $(nj_join "$sweep") --gather"
    printf '%s: sweep %s: job array %s (%s points, one per task), then gather job %s\n' \
        "$NJ_PROG" "$sweep" "$array_id" "$count" "${gather_out%%;*}"
}

nodes="" gpus="" partition="" time_limit="" account="" job_name=neuronjax output="" cpus="" port=""
sweep="" max_running="" dry_run=0
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
        --sweep) nj_need_value "$@"; sweep=$2; shift 2 ;;
        --max-running) nj_need_value "$@"; max_running=$2; shift 2 ;;
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

if [[ -n $sweep ]]; then
    nodes=${nodes:-1}
else
    [[ -n $nodes ]] || nj_die "missing required flag --nodes (the number of nodes)"
    [[ -z $max_running ]] || nj_die "--max-running goes with --sweep"
fi
nj_check_uint --nodes "$nodes"
[[ -z $gpus ]] || nj_check_uint --gpus-per-node "$gpus"
[[ -z $cpus ]] || nj_check_uint --cpus-per-task "$cpus"
[[ -z $max_running ]] || nj_check_uint --max-running "$max_running"
if [[ -n $port ]]; then
    nj_check_uint --port "$port"
    ((10#$port <= 65535)) || nj_die "--port expects a port number up to 65535, got '$port'"
fi
if [[ -n $sweep ]]; then
    [[ -f $sweep ]] || nj_die "--sweep: no such file: '$sweep'"
    for word in ${cmd[@]+"${cmd[@]}"}; do
        case $word in
            --point | --point=* | --gather | --count | --dry-run)
                nj_die "--sweep sets $word itself (after -- go overrides, --quiet, --force)" ;;
        esac
    done
else
    ((${#cmd[@]})) || nj_die "no command given after --"
fi

queue=()
[[ -z $partition ]] || queue+=("--partition=$partition")
[[ -z $time_limit ]] || queue+=("--time=$time_limit")
[[ -z $account ]] || queue+=("--account=$account")
[[ -z $output ]] || queue+=("--output=$output")
args=(sbatch "--job-name=$job_name" "--nodes=$((10#$nodes))" --ntasks-per-node=1)
[[ -z $gpus ]] || args+=("--gpus-per-node=$((10#$gpus))")
args+=(${queue[@]+"${queue[@]}"})
[[ -z $cpus ]] || args+=("--cpus-per-task=$((10#$cpus))")
[[ -z $port ]] || args+=("--export=ALL,NEURONJAX_PORT=$((10#$port))")

if ! ((dry_run)) && ! command -v sbatch >/dev/null 2>&1; then
    nj_fail "sbatch not found on PATH (run this on a SLURM login node, or use --dry-run)"
fi
if [[ -n $sweep ]]; then
    submit_sweep
    exit 0
fi
args+=(${extra[@]+"${extra[@]}"} "$here/slurm.sbatch" "${cmd[@]}")
if ((dry_run)); then
    printf '%s\n' "$(nj_join "${args[@]}")"
    exit 0
fi
exec "${args[@]}"
