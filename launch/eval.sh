#!/bin/bash
# `vau eval` as one task (one GPU for a local judge LLM; judge answers are cached, so a
# resubmitted job repeats no judge call).
#   sbatch launch/eval.sh predictions=[results/stage3] out=results/eval anomeval.judge.model=/models/judge anomeval.judge.device=cuda
#   launch/submit.sh eval --gpus-per-node=1 --ntasks-per-node=1 predictions=[...] out=...
#SBATCH --job-name=vau_eval
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

# This script's own path (sbatch runs a spooled copy; SLURM keeps the original as the job's Command).
_self=$([ -n "${SLURM_JOB_ID:-}" ] && scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -1)
. "${VAU_REPO:-$(cd "$(dirname "${_self:-$0}")/.." && pwd)}/launch/common.sh"
vau_launch_tool eval "$@"
