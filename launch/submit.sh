#!/bin/bash
# launch/submit.sh SCRIPT [sbatch options] [vau overrides]
#   sbatch of launch/SCRIPT.sh (stage1, stage2, stage3, infer, eval, sweep, or a path) with the
#   site file's settings (slurm/env/${VAU_SITE:-default}.sh, or VAU_SITE_FILE): account,
#   partition, qos, wall time, GPUs and CPUs per task. Options starting with "-" go to sbatch
#   (and win over the site file); the rest are vau overrides. Works from any directory; runs/
#   and data/ are relative to where you submit.
#     launch/submit.sh stage1
#     VAU_SITE=mycluster launch/submit.sh stage3 --nodes=2 optim.lr=1e-5
#     VAU_PARTITION=debug VAU_TIME=0:30:00 launch/submit.sh stage3 experiment=tiny/anomshield_stage3 trainer=cpu
set -euo pipefail
VAU_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VAU_REPO
[ $# -ge 1 ] || { echo "usage: launch/submit.sh SCRIPT [sbatch options] [vau overrides]" >&2; exit 2; }
script=$1
shift
[ -f "$script" ] || script=$VAU_REPO/launch/$script.sh
[ -f "$script" ] || { echo "vau: no launch script $script (stage1, stage2, stage3, infer, eval, sweep)" >&2; exit 2; }
site=${VAU_SITE_FILE:-$VAU_REPO/slurm/env/${VAU_SITE:-default}.sh}
[ -f "$site" ] || { echo "vau: no site file $site (set VAU_SITE=<name> or VAU_SITE_FILE=<path>)" >&2; exit 2; }
. "$site"

flags=()
[ -z "${VAU_ACCOUNT:-}" ] || flags+=("--account=$VAU_ACCOUNT")
[ -z "${VAU_PARTITION:-}" ] || flags+=("--partition=$VAU_PARTITION")
[ -z "${VAU_QOS:-}" ] || flags+=("--qos=$VAU_QOS")
[ -z "${VAU_TIME:-}" ] || flags+=("--time=$VAU_TIME")
[ -z "${VAU_NODES:-}" ] || flags+=("--nodes=$VAU_NODES")
[ -z "${VAU_CPUS_PER_TASK:-}" ] || flags+=("--cpus-per-task=$VAU_CPUS_PER_TASK")
if [ -n "${VAU_GPUS_PER_NODE:-}" ]; then
  # One task per GPU; a CPU-only site (0) runs one task per node.
  flags+=("--gpus-per-node=$VAU_GPUS_PER_NODE" "--ntasks-per-node=$(( VAU_GPUS_PER_NODE > 0 ? VAU_GPUS_PER_NODE : 1 ))")
fi
sbatch_args=()
vau_args=()
for a in "$@"; do
  case $a in
    -*) sbatch_args+=("$a") ;;
    *) vau_args+=("$a") ;;
  esac
done
# shellcheck disable=SC2086  # VAU_SBATCH_ARGS is a site's extra options, split on spaces
exec sbatch "${flags[@]}" ${VAU_SBATCH_ARGS:-} "${sbatch_args[@]}" "$script" "${vau_args[@]}"
