#!/bin/bash
# AnomShield stage 2 (long captions; vision + LLM frozen), DeepSpeed ZeRO-2, bf16.
#   sbatch launch/stage2.sh                                    # conf/experiment/anomshield/stage2.yaml
#   sbatch --nodes=2 launch/stage2.sh data.batch_size=2       # more nodes; vau overrides after the script
#   sbatch launch/stage2.sh experiment=tiny/anomshield_stage2 trainer=cpu
# Training output goes to <run dir>/slurm-<job>.out; this file only logs the launch.
#SBATCH --job-name=anomshield_stage2
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

. "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}/launch/common.sh"
vau_launch anomshield/stage2 "$@"
