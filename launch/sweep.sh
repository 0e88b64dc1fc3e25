#!/bin/bash
# One member of a `vau sweep` job array: runs line $SLURM_ARRAY_TASK_ID (0-based) of the member
# list that `vau sweep` wrote. Resources below are defaults; the sweep file's `sbatch:` options
# (given on the sbatch command line by `vau sweep`) override them.
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%A_%a.out

# This script's own path (sbatch runs a spooled copy; SLURM keeps the original as the job's Command).
_self=$([ -n "${SLURM_JOB_ID:-}" ] && scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -1)
. "${VAU_REPO:-$(cd "$(dirname "${_self:-$0}")/.." && pwd)}/launch/common.sh"
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$1")
[ -n "$line" ] || { echo "vau: no member $SLURM_ARRAY_TASK_ID in $1" >&2; exit 2; }
eval "set -- $line"   # the line is shell-quoted by vau sweep
experiment=${1#experiment=}
shift
vau_launch "$experiment" "$@"
