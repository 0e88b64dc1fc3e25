# Site settings for launch/*.sh (pick another file with VAU_SITE=<name> for slurm/env/<name>.sh,
# or VAU_SITE_FILE=<path>). Sourced twice: by launch/submit.sh before sbatch (the VAU_* job
# settings below) and inside the job before srun (modules, NCCL, threads). Keep cluster
# specifics here, not in the launch scripts. Each setting can also come from the environment
# (VAU_PARTITION=gpu launch/submit.sh stage1); empty = the launch script's #SBATCH default.

# --- job settings (launch/submit.sh) ---
VAU_ACCOUNT=${VAU_ACCOUNT:-}            # --account
VAU_PARTITION=${VAU_PARTITION:-}        # --partition
VAU_QOS=${VAU_QOS:-}                    # --qos
VAU_TIME=${VAU_TIME:-}                  # --time (wall time), e.g. 24:00:00
VAU_NODES=${VAU_NODES:-}                # --nodes
VAU_GPUS_PER_NODE=${VAU_GPUS_PER_NODE:-}  # --gpus-per-node and --ntasks-per-node (one task per GPU); 0 = CPU only
VAU_CPUS_PER_TASK=${VAU_CPUS_PER_TASK:-}  # --cpus-per-task (data workers + the main process)
VAU_SBATCH_ARGS=${VAU_SBATCH_ARGS:-}    # any other sbatch options, e.g. "--constraint=a100 --mem=0"

# --- job environment (inside the job) ---
# module load cuda/12.4 nccl            # environment modules, if the site uses them
# export NCCL_IB_HCA=mlx5              # InfiniBand adapters
# export NCCL_SOCKET_IFNAME=ib0        # interface for NCCL's bootstrap
# export WANDB_MODE=offline            # air-gapped compute nodes (an explicit WANDB_MODE wins over configs)
export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}  # a failed collective raises instead of hanging
