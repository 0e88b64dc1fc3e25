# Shared body of the launch/*.sh sbatch scripts (sourced, not run).
#
# Each script finds this file from its own path (sbatch runs a spooled copy; SLURM keeps the
# original path as the job's Command), so jobs can be submitted from any directory. Relative
# paths (runs/, data/) stay relative to the directory the job was submitted from.
#
# vau_launch EXPERIMENT [overrides...]
#   One `vau train` task per GPU with srun (Lightning reads SLURM's rank variables). Node and
#   per-node task counts come from the allocation, so the same script scales with
#   `sbatch --nodes=N` or `--gpus-per-node=G`. Overrides after the script name win, e.g.
#   `sbatch launch/stage3.sh experiment=tiny/anomshield_stage3 trainer=cpu`.
#   Outside SLURM (plain `bash launch/stage3.sh ...`) it runs one process directly.
# vau_launch_tool infer|eval [overrides...]
#   `vau infer` as one task per GPU (like training), `vau eval` as one task.

vau_setup() {
  VAU_REPO=${VAU_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
  export VAU_REPO
  cd "${SLURM_SUBMIT_DIR:-$PWD}" || exit 1
  # A venv in the repository is used when one is there and none is active.
  if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$VAU_REPO/.venv/bin/activate" ]; then
    . "$VAU_REPO/.venv/bin/activate"
  fi
  local site=${VAU_SITE_FILE:-$VAU_REPO/slurm/env/${VAU_SITE:-default}.sh}
  [ -f "$site" ] || { echo "vau: no site file $site (set VAU_SITE=<name> or VAU_SITE_FILE=<path>)" >&2; exit 2; }
  . "$site"
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    # Slurm >= 22.05 no longer passes --cpus-per-task from sbatch to srun: without this, every
    # task (and its data workers) would share one core.
    export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK:-1}
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
  fi
}

# srun [more srun options] COMMAND...: CPUs per task passed on, each output line labelled with its rank.
vau_srun() {
  srun --kill-on-bad-exit=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" --label "$@"
}

vau_launch() {
  local experiment=$1
  shift
  vau_setup
  local args=("experiment=$experiment")
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    args+=("trainer.num_nodes=${SLURM_JOB_NUM_NODES:-1}" "trainer.devices=${SLURM_NTASKS_PER_NODE:-1}")
  fi
  args+=("$@")
  local run_dir
  run_dir=$(vau config get run.dir "${args[@]}") || exit 2
  mkdir -p "$run_dir"
  # Preemption: SLURM sends USR1 (#SBATCH --signal) before the time limit; vau (not Lightning)
  # stops every rank at one step with a checkpoint, requeues the job (it restarts here with
  # resume=auto) and exits 138. A scancel (SIGTERM) also checkpoints and exits 143: the job ends
  # FAILED, so `afterok` dependants never start on a partial run. Only a finished run exits 0.
  echo "vau: job ${SLURM_JOB_ID:-local} restart ${SLURM_RESTART_COUNT:-0}: vau train ${args[*]} -> $run_dir"
  if [ -n "${SLURM_JOB_ID:-}" ]; then
    vau_srun --output="$run_dir/slurm-%j.out" --open-mode=append vau train "${args[@]}"
  else
    vau train "${args[@]}"
  fi
}

vau_launch_tool() {
  local tool=$1
  shift
  vau_setup
  local args=()
  if [ -n "${SLURM_JOB_ID:-}" ] && [ "$tool" = infer ]; then
    args+=("trainer.num_nodes=${SLURM_JOB_NUM_NODES:-1}" "trainer.devices=${SLURM_NTASKS_PER_NODE:-1}")
  fi
  args+=("$@")
  echo "vau: job ${SLURM_JOB_ID:-local} restart ${SLURM_RESTART_COUNT:-0}: vau $tool ${args[*]}"
  if [ -z "${SLURM_JOB_ID:-}" ]; then
    vau "$tool" "${args[@]}"
  elif [ "$tool" = infer ]; then
    # Per-rank parts are fsynced per batch: a requeued or resubmitted job skips what is written.
    vau_srun vau infer "${args[@]}"
  else
    vau_srun --ntasks=1 vau eval "${args[@]}"
  fi
}
