# Shared body of the launch/stage*.sh sbatch scripts (sourced, not run).
#
# vau_launch EXPERIMENT [overrides...]
#   Resolves the run dir, then starts one `vau train` task per GPU with srun (Lightning reads
#   SLURM's rank variables). Node and per-node task counts come from the allocation, so the
#   same script scales with `sbatch --nodes=N`. Overrides after the script name win, e.g.
#   `sbatch launch/stage3.sh experiment=tiny/anomshield_stage3 trainer=cpu`.
#   Outside SLURM (plain `bash launch/stage3.sh ...`) it runs one process directly.

vau_launch() {
  local experiment=$1
  shift
  cd "${SLURM_SUBMIT_DIR:-$PWD}" || exit 1
  # A venv in the repository is used when one is there and none is active.
  if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
    . .venv/bin/activate
  fi
  local site="slurm/env/${VAU_SITE:-default}.sh"
  [ -f "$site" ] || { echo "vau: no site file $site (set VAU_SITE)" >&2; exit 2; }
  . "$site"
  local args=("experiment=$experiment")
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    args+=("trainer.num_nodes=${SLURM_JOB_NUM_NODES:-1}" "trainer.devices=${SLURM_NTASKS_PER_NODE:-1}")
  fi
  args+=("$@")
  local run_dir
  run_dir=$(vau config get run.dir "${args[@]}") || exit 2
  mkdir -p "$run_dir"
  # Preemption: SLURM sends USR1 (#SBATCH --signal) before the time limit; vau stops at a step
  # with a checkpoint, requeues the job (it restarts here with resume=auto) and exits 138. A
  # scancel (SIGTERM) also checkpoints and exits 143: the job ends FAILED, so `afterok`
  # dependants never start on a partial run. Only a run that reached its end exits 0.
  echo "vau: job ${SLURM_JOB_ID:-local} restart ${SLURM_RESTART_COUNT:-0}: vau train ${args[*]} -> $run_dir"
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    srun --kill-on-bad-exit=1 --output="$run_dir/slurm-%j.out" --open-mode=append vau train "${args[@]}"
  else
    vau train "${args[@]}"
  fi
}
