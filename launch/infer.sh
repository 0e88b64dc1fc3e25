#!/bin/bash
# `vau infer` over test shards, one task per GPU (each rank answers its share; a requeued or
# resubmitted job skips every id already written).
#   sbatch launch/infer.sh model=runs/anomshield_stage3 shards='/data/ecva/test/*.tar' out=results/stage3
#   launch/submit.sh infer model=... shards=... out=...     # with the site file's settings
#SBATCH --job-name=vau_infer
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

# This script's own path (sbatch runs a spooled copy; SLURM keeps the original as the job's Command).
_self=$([ -n "${SLURM_JOB_ID:-}" ] && scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -1)
. "${VAU_REPO:-$(cd "$(dirname "${_self:-$0}")/.." && pwd)}/launch/common.sh"
vau_launch_tool infer "$@"
