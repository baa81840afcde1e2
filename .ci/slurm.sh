#!/usr/bin/env bash
# Real Slurm on this machine: install Debian's slurm-wlm daemons and munge, write a one-node slurm.conf for
# localhost, start munged, slurmctld and slurmd, run the sweep check (.ci/slurm_sweep.py), shut everything down.
# Needs root (apt-get, munged). Usage: bash .ci/slurm.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/xfuse-slurm.XXXXXX)
export SLURM_CONF="$work/slurm.conf"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm: installing slurmctld, slurmd, slurm-client and munge from Debian"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null
fi

stop() {
    scontrol shutdown >/dev/null 2>&1 || true
    for pid_file in "$work/slurmctld.pid" "$work/slurmd.pid" /run/munge/munged.pid; do
        [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null || true
    done
    sleep 1
    pkill -f "slurmctld|slurmd" 2>/dev/null || true
    echo "slurm: daemons shut down"
}
trap stop EXIT

host=$(hostname -s)
cpus=$(nproc)
memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
mkdir -p "$work/state" "$work/spool"
cat > "$SLURM_CONF" <<CONF
ClusterName=xfuse-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=ci Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; \
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
pgrep -x munged >/dev/null || munged --force
munge -n | unmunge >/dev/null
slurmctld
slurmd
for _ in $(seq 60); do
    sinfo --noheader -o "%T" 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo
sinfo --noheader -o "%T" | grep -q idle || { echo "slurm: the node never became idle"; tail -n 20 "$work"/*.log; exit 1; }

cd "$repo"
python .ci/slurm_sweep.py --work "$work"
