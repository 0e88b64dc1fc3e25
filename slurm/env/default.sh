# Site settings for launch/*.sh, sourced before `srun` (pick another file with VAU_SITE=<name>,
# e.g. slurm/env/mycluster.sh). Keep cluster specifics here, not in the launch scripts.
#
# module load cuda/12.4 nccl            # environment modules, if the site uses them
# export NCCL_IB_HCA=mlx5              # InfiniBand adapters
# export NCCL_SOCKET_IFNAME=ib0        # interface for NCCL's bootstrap
export NCCL_ASYNC_ERROR_HANDLING=1     # a failed collective raises instead of hanging
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}   # one OpenMP pool per task, sized to its CPUs
