# shellcheck shell=bash
# Helpers for the launch scripts (sourced by tpu_pod.sh, slurm.sh and local.sh; not run by itself).
# slurm.sbatch holds its own copy of nj_quote and nj_join: sbatch runs a copy of that file from a
# spool directory, where this one is not next to it.

NJ_PROG=${0##*/}

# Usage error: message on stderr, exit status 2.
nj_die() {
    printf '%s: error: %s\n' "$NJ_PROG" "$*" >&2
    printf "Run '%s --help' for the usage.\n" "$NJ_PROG" >&2
    exit 2
}

# Runtime error (not a usage error): message on stderr, exit status 1.
nj_fail() {
    printf '%s: error: %s\n' "$NJ_PROG" "$*" >&2
    exit 1
}

# nj_need_value "$@": the flag in $1 must be followed by a value that does not look like a flag.
nj_need_value() {
    if (($# < 2)) || [[ -z $2 || $2 == -* ]]; then
        nj_die "$1 needs a value"
    fi
}

# nj_check_uint FLAG VALUE [MIN]: VALUE must be a whole number >= MIN (default 1).
nj_check_uint() {
    local min=${3:-1}
    if ! [[ $2 =~ ^[0-9]+$ ]] || ((10#$2 < min)); then
        nj_die "$1 expects a whole number >= $min, got '$2'"
    fi
}

# nj_quote WORD: WORD written as one shell word that bash reads back as exactly WORD.
# Plain words stay as they are; otherwise single quotes, or double quotes when WORD holds a single
# quote, or bash's printf %q ($'...') for control characters and the rare rest.
nj_quote() {
    local s=$1 plain='^[[:alnum:]_./:=,+@%-]+$'
    if [[ $s =~ $plain ]]; then
        printf '%s' "$s"
    elif [[ $s == *[[:cntrl:]]* ]]; then
        printf '%q' "$s"
    elif [[ $s != *\'* ]]; then
        printf "'%s'" "$s"
    elif [[ $s != *!* ]]; then
        s=${s//\\/\\\\}
        s=${s//\"/\\\"}
        s=${s//\$/\\\$}
        s=${s//\`/\\\`}
        printf '"%s"' "$s"
    else
        printf '%q' "$s"
    fi
}

# nj_join WORD...: the words quoted with nj_quote, separated by single spaces.
nj_join() {
    local out="" w
    for w in "$@"; do
        out+="${out:+ }$(nj_quote "$w")"
    done
    printf '%s' "$out"
}
