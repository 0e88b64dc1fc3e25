#!/bin/bash
# AnomShield stage 3 (video instruction tuning: LoRA + vision tower), DeepSpeed ZeRO-2, bf16.
#   sbatch launch/stage3.sh                                    # conf/experiment/anomshield/stage3.yaml
#   sbatch --nodes=2 launch/stage3.sh optim.lr=1e-5            # more nodes; vau overrides after the script
#   launch/submit.sh stage3                                  # with the site file's account/partition/GPUs/CPUs/time
#   sbatch launch/stage3.sh experiment=tiny/anomshield_stage3 trainer=cpu
# Training output goes to <run dir>/slurm-<job>.out; this file only logs the launch.
#SBATCH --job-name=anomshield_stage3
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --time=48:00:00
#SBATCH --signal=USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

# This script's own path (sbatch runs a spooled copy; SLURM keeps the original as the job's Command).
_self=$([ -n "${SLURM_JOB_ID:-}" ] && scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -1)
. "${VAU_REPO:-$(cd "$(dirname "${_self:-$0}")/.." && pwd)}/launch/common.sh"
vau_launch anomshield/stage3 "$@"
