#!/usr/bin/env bash
# usage: run.sh N MODE   (MODE: between = kill after the first completion; running = kill while a trial runs)
set -u
cd /work/main
export EFFNAS_POSTGRES_DIR=/tmp/repro/pg/cluster
mkdir -p /tmp/repro/pg; chmod 755 /tmp/repro/pg
url=$(scripts/postgres start 2>/dev/null | tail -n1)
bin=/work/main/target/debug/effnas
n=$1; mode=$2
name=repro_$n
psql "$url" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null
psql "$url" -qc "CREATE DATABASE $name" >/dev/null
db=${url%/effnas}/$name
q() { psql "$db" -Atc "$1" 2>/dev/null; }
EFFNAS_DB=$db RUST_LOG=${RUST_LOG_REPRO:-info} setsid $bin search --strategy random --seed 5 --trials 6 --workers 2 --finalists 0 --threads 1 --json \
  --width 0.25 --depth 0.5 --train-images 128 --validation-images 64 --epochs 1 --resolution 16 > /tmp/repro/out.$n 2> /tmp/repro/err.$n &
pid=$!
if [ "$mode" = between ]; then
  until [ "$(q "select count(*) from trials where state='complete'")" -ge 1 ] 2>/dev/null; do sleep 0.05; done
else
  until [ "$(q "select count(*) from trials where state='running'")" -ge 1 ] 2>/dev/null; do sleep 0.05; done
fi
q "select id,state,attempts,worker from trials order by id" > /tmp/repro/before.$n
scripts/postgres kill 2>/dev/null
sleep 3
scripts/postgres start >/dev/null 2>&1
for i in $(seq 1 240); do kill -0 $pid 2>/dev/null || break; sleep 0.5; done
if kill -0 $pid 2>/dev/null; then
  echo "HANG $n"
  q "select id,state,attempts,worker,lease_until from trials order by id" > /tmp/repro/hang.$n
  q "select id,status,trials_total,trials_done,trials_failed from runs" >> /tmp/repro/hang.$n 2>&1 || q "select * from runs" >> /tmp/repro/hang.$n
  ps -ef --forest | grep -v grep | grep effnas > /tmp/repro/ps.$n
  for p in $(pgrep -f "target/debug/effnas"); do echo "== $p $(tr '\0' ' ' < /proc/$p/cmdline)"; gdb -p $p -batch -ex "thread apply all bt 12" 2>/dev/null | grep -E "^#|^Thread" | head -150; done > /tmp/repro/gdb.$n
  kill -- -$pid 2>/dev/null; pkill -f "target/debug/effnas"
else
  wait $pid; rc=$?
  s=$(q "select string_agg(state, ',' order by id) from trials")
  echo "END $n rc=$rc states=$s"
fi
