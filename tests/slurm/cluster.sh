#!/usr/bin/env bash
# usage: cluster.sh start DIR | stop DIR
# A single-node SLURM cluster on localhost for the tests (Debian's slurm-wlm), with
# accounting off and one fake `gpu` gres (File=/dev/null) so that GPU rules schedule.
# The executor plugin strips SLURM_* variables inside jobs, so slurm.conf must sit at
# the default path /etc/slurm/slurm.conf; stop removes what start linked there.
set -euo pipefail
action=$1
D=$(mkdir -p "$2" && cd "$2" && pwd)
case "$action" in
start)
  mkdir -p "$D/state" "$D/spool" "$D/log" /etc/slurm
  cpus=$(nproc)
  mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2))
  cat >"$D/slurm.conf" <<CONF
ClusterName=boxseg-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  printf 'AutoDetect=off\nNodeName=localhost Name=gpu File=/dev/null\n' >"$D/gres.conf"
  ln -sf "$D/slurm.conf" /etc/slurm/slurm.conf
  ln -sf "$D/gres.conf" /etc/slurm/gres.conf
  /usr/sbin/slurmctld
  /usr/sbin/slurmd -N localhost
  for _ in $(seq 1 200); do
    sinfo -h -o %t 2>/dev/null | grep -qx idle && break
    sleep 0.1
  done
  sinfo
  ;;
stop)
  for f in slurmd slurmctld; do
    [ -f "$D/$f.pid" ] && kill "$(cat "$D/$f.pid")" 2>/dev/null || true
  done
  rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
