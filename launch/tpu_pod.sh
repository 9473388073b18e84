#!/usr/bin/env bash
# One command on every worker of a Cloud TPU pod slice, through `gcloud compute tpus tpu-vm ssh`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=launch/_lib.sh
. "$here/_lib.sh"

setup_command="python3 -m pip install -e . 'jax[tpu]'"

usage() {
    cat <<EOF
Usage: $NJ_PROG --tpu NAME --zone ZONE [--project P] [--workdir DIR] [--env KEY=VAL ...]
                [--copy] [--setup] [--dry-run] -- COMMAND [ARG...]

Run COMMAND on all workers of the TPU VM slice NAME at once (gcloud ... ssh --worker=all).
JAX finds the other workers of the slice by itself; process 0 (worker 0) writes the results,
under DIR on worker 0.

On each worker the command runs as
  cd DIR && export PATH=\$HOME/.local/bin:\$PATH [KEY=VAL ...] && COMMAND [ARG...]
with every word shell-quoted, so overrides holding spaces or quotes arrive unchanged.

Options:
  --tpu NAME        TPU VM name (required)
  --zone ZONE       its zone (required)
  --project P       Google Cloud project (default: gcloud's configured project)
  --workdir DIR     checkout of this repository on the workers, relative to the remote
                    home directory unless absolute (default: neuronjax, i.e. ~/neuronjax)
  --env KEY=VAL     export KEY=VAL on the workers before the command (repeatable)
  --copy            first copy this checkout to DIR on all workers: the top-level files and
                    directories that git lists (tracked, or untracked and not ignored: no
                    .git, runs/ or .venv/; ignored files inside the listed directories, such
                    as __pycache__, do go), with 'gcloud compute tpus tpu-vm scp --recurse'.
                    Files deleted here are not deleted there.
  --setup           then install on all workers, in DIR: $setup_command
                    (the package, editable, with JAX's TPU runtime; pip puts the neuronjax
                    command in ~/.local/bin, hence the PATH above)
  --dry-run         print the gcloud command lines (shell-quoted, ready to paste), run nothing
  -h, --help        this text

With --copy or --setup, the command after -- may be left out.

Example:
  $NJ_PROG --tpu my-v4-32 --zone us-central2-b --copy --setup -- \\
      neuronjax run configs/default.yaml name=v4-32
EOF
}

tpu="" zone="" project="" workdir="neuronjax" copy=0 setup=0 dry_run=0
envs=() cmd=()
while (($#)); do
    case $1 in
        --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    esac
    case $1 in
        --tpu) nj_need_value "$@"; tpu=$2; shift 2 ;;
        --zone) nj_need_value "$@"; zone=$2; shift 2 ;;
        --project) nj_need_value "$@"; project=$2; shift 2 ;;
        --workdir) nj_need_value "$@"; workdir=$2; shift 2 ;;
        --env)
            nj_need_value "$@"
            [[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || nj_die "--env expects KEY=VALUE, got '$2'"
            envs+=("$2")
            shift 2
            ;;
        --copy) copy=1; shift ;;
        --setup) setup=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; cmd=("$@"); break ;;
        -*) nj_die "unknown flag: $1" ;;
        *) nj_die "unexpected argument '$1' (the command goes after --)" ;;
    esac
done

[[ -n $tpu ]] || nj_die "missing required flag --tpu (the TPU VM name)"
[[ -n $zone ]] || nj_die "missing required flag --zone (the TPU's zone)"
if ((${#cmd[@]} == 0 && copy == 0 && setup == 0)); then
    nj_die "no command given after -- (and neither --copy nor --setup)"
fi

# The remote shell starts in the home directory: "~/x" and "x" are the same place there.
# shellcheck disable=SC2088 # the tildes are literal: what the user wrote for the remote home
case $workdir in
    "~") workdir=. ;;
    "~/"*) workdir=${workdir#"~/"} ;;
    "~"*) nj_die "--workdir: give a path relative to the remote home or an absolute one, not '$workdir'" ;;
esac
[[ -n $workdir ]] || workdir=.
qdir=$(nj_quote "$workdir")

where=(--zone "$zone")
[[ -z $project ]] || where+=(--project "$project")

# run ARGV...: print it (dry run) or run it.
run() {
    if ((dry_run)); then
        printf '%s\n' "$(nj_join "$@")"
    else
        "$@"
    fi
}

# on_all REMOTE_SCRIPT: run a shell script on every worker.
on_all() {
    run gcloud compute tpus tpu-vm ssh "$tpu" "${where[@]}" --worker=all --command "$1"
}

if ((!dry_run)) && ! command -v gcloud >/dev/null 2>&1; then
    nj_fail "gcloud not found on PATH (install the Google Cloud CLI, or use --dry-run)"
fi

# NUL-separated paths in, their first components out.
top_levels() {
    local f
    while IFS= read -r -d '' f; do
        printf '%s\0' "${f%%/*}"
    done
}

if ((copy)); then
    root=$(cd "$here/.." && pwd)
    git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 \
        || nj_fail "--copy: $root is not a git checkout (the files to copy are the ones git lists)"
    tops=()
    while IFS= read -r -d '' top; do
        if [[ -e $root/$top ]]; then # a tracked file deleted here is still listed
            tops+=("$root/$top")
        fi
    done < <(git -C "$root" ls-files -z --cached --others --exclude-standard | top_levels | LC_ALL=C sort -zu)
    ((${#tops[@]})) || nj_fail "--copy: git lists no files in $root"
    on_all "mkdir -p $qdir"
    run gcloud compute tpus tpu-vm scp --recurse "${tops[@]}" "$tpu:$workdir" "${where[@]}" --worker=all
fi

if ((setup)); then
    on_all "cd $qdir && $setup_command"
fi

if ((${#cmd[@]})); then
    script="cd $qdir && export PATH=\$HOME/.local/bin:\$PATH"
    for kv in ${envs[@]+"${envs[@]}"}; do
        script+=" ${kv%%=*}=$(nj_quote "${kv#*=}")"
    done
    script+=" && $(nj_join "${cmd[@]}")"
    on_all "$script"
fi
