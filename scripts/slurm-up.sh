#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine for tfrepro's tests and CI (idempotent, as root).
# Debian's slurm-wlm: munged, slurmctld and slurmd, no systemd and no accounting daemon.
# The controller listens on 127.0.0.1 only. Prints `slurm-up: ready: ...` when `sinfo` shows
# the node idle; exits non-zero (with the daemons' last log lines) when it cannot get there.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by tfrepro scripts/slurm-up.sh"
LOGDIR=/var/log/slurm

log() { echo "slurm-up: $*" >&2; }

if [ "$(id -u)" != 0 ]; then log "run as root"; exit 2; fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm (munge, slurmctld, slurmd, sbatch...)"
  export DEBIAN_FRONTEND=noninteractive
  [ -f /tmp/.tfrepro-apt-updated ] || { apt-get update -qq && touch /tmp/.tfrepro-apt-updated; }
  apt-get install -y -qq slurm-wlm >/dev/null
fi

# munge: one key, its socket directory, the daemon as the munge user.
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge
chown munge:munge /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  su -s /bin/sh munge -c munged
  for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
  munge -n | unmunge >/dev/null || { log "munged does not answer"; exit 1; }
fi

# slurm.conf for this host; a file we did not write is left alone.
host=$(hostname)
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGDIR"
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  log "keeping $CONF (not written by this script)"
else
  new=$(cat <<CONF
$MARK
ClusterName=tfrepro
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGDIR/jobcomp.log
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)
  if [ "$(cat "$CONF" 2>/dev/null)" != "$new" ]; then
    echo "$new" >"$CONF"
    log "wrote $CONF"
    # a running controller must reread it
    scontrol ping >/dev/null 2>&1 && scontrol reconfigure >/dev/null 2>&1 || true
  fi
fi

ctld_up() { scontrol ping 2>/dev/null | grep -q "is UP"; }
if ! ctld_up; then
  log "starting slurmctld (log: $LOGDIR/slurmctld.log)"
  slurmctld
  for _ in $(seq 1 40); do ctld_up && break; sleep 0.25; done
  ctld_up || { log "slurmctld does not answer; last log lines:"; tail -n 20 "$LOGDIR/slurmctld.log" >&2; exit 1; }
fi
if ! pgrep -x slurmd >/dev/null; then
  log "starting slurmd (log: $LOGDIR/slurmd.log)"
  slurmd
fi

state() { sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1; }
for _ in $(seq 1 60); do
  case "$(state)" in
    idle|mix|alloc) break ;;
    down*|drain*|drng*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
case "$(state)" in
  idle|mix|alloc) ;;
  *) log "node $host is '$(state)', not idle; last log lines:"; tail -n 20 "$LOGDIR/slurmd.log" >&2; exit 1 ;;
esac
log "ready: $(sinfo --version), cluster tfrepro, partition debug, node $host $(state)"
