#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, for the `slurm`-marked tests and for trying the
# launch scripts. Idempotent; stops only the daemons it started (PID files in $VAU_SLURM_DIR).
#
#   tools/slurm_local.sh start    # install (Debian packages) if needed, configure, start, wait idle
#   tools/slurm_local.sh stop     # stop our slurmctld/slurmd/munged
#   tools/slurm_local.sh status
#
# Needs root (Debian 12). Settings that matter, and why (see also ../shared/NOTES.md):
#  - munged refuses to run as root: it runs as the munge user.
#  - SelectTypeParameters=CR_Core: CR_Core_Memory made jobs run one at a time.
#  - AuthInfo=cred_expire=10 + fast scheduler intervals: a requeued job restarts in ~15 s, not ~145 s.
#  - No GRES: GPU requests in the launch scripts are overridden on the sbatch command line.
set -euo pipefail

STATE=${VAU_SLURM_DIR:-/tmp/vau-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by vau tools/slurm_local.sh"

log() { echo "slurm_local: $*" >&2; }

running() {  # running NAME: true if our PID file names a live process
  local f="$STATE/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

install() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  fi
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return  # a working munged (ours or the system's)
  fi
  [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  cp /run/munge/munged.pid "$STATE/munged.pid"
  for _ in $(seq 20); do munge -n | unmunge >/dev/null 2>&1 && return; sleep 0.5; done
  log "munged did not come up"; exit 1
}

write_conf() {
  local host node
  host=$(hostname -s)
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    log "$CONF exists and is not ours: leaving it alone"; return
  fi
  node=$(slurmd -C | head -1 | sed "s/ UpTime=.*//")
  mkdir -p /etc/slurm "$STATE/state" "$STATE/spool"
  cat > "$CONF.tmp" <<EOF
$MARK
ClusterName=vau
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobRequeue=1
ReturnToService=2
MailProg=/bin/true
SchedulerParameters=bf_interval=5,sched_interval=5
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

start() {
  mkdir -p "$STATE"
  install
  start_munge
  write_conf
  running slurmctld || { /usr/sbin/slurmctld -D -f "$CONF" >>"$STATE/slurmctld.out" 2>&1 & echo $! > "$STATE/slurmctld.pid"; }
  running slurmd || { /usr/sbin/slurmd -D -f "$CONF" >>"$STATE/slurmd.out" 2>&1 & echo $! > "$STATE/slurmd.pid"; }
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      log "up: $(sinfo -h -o '%P %D %t %C')"; return
    fi
    sleep 1
  done
  log "cluster not idle after 60 s; see $STATE/*.log"; exit 1
}

stop() {
  for d in slurmd slurmctld munged; do
    if running "$d"; then kill "$(cat "$STATE/$d.pid")" && log "stopped $d"; fi
    rm -f "$STATE/$d.pid"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo && squeue ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
