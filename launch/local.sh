#!/usr/bin/env bash
# N local processes on one machine, one coordinator on localhost (CPU with gloo, or one GPU each).
#   launch/local.sh 2 --config=configs/demo.py --config.data.streams=2
# CPU: each process gets LOCAL_DEVICES fake devices (default 1). GPU: set GPUS_PER_PROC=1 and each
# process sees its own device through CUDA_VISIBLE_DEVICES.
set -euo pipefail
n=${1:?usage: launch/local.sh NUM_PROCESSES [jaxcoder train flags...]}; shift
port=${PORT:-$((20000 + RANDOM % 20000))}
bin=${JAXCODER:-.venv/bin/jaxcoder}
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' INT TERM   # forward preemption to every process
for ((i = 0; i < n; i++)); do
  extra=()
  if [[ -n "${GPUS_PER_PROC:-}" ]]; then
    export CUDA_VISIBLE_DEVICES=$(seq -s, $((i * GPUS_PER_PROC)) $(((i + 1) * GPUS_PER_PROC - 1)))
  else
    extra+=(--config.distributed.local_devices="${LOCAL_DEVICES:-1}")
  fi
  JAXCODER_COORDINATOR=127.0.0.1:$port JAXCODER_NUM_PROCESSES=$n JAXCODER_PROCESS_ID=$i \
    "$bin" train "$@" "${extra[@]}" > >(sed "s/^/[p$i] /") 2>&1 &
  pids+=($!)
done
# The first process to fail stops the others: they would otherwise wait in a collective for a
# peer that is gone until the coordinator's timeout. Its exit status is the script's.
status=0
left=("${pids[@]}")
while ((${#left[@]})); do
  code=0
  wait -n -p done_pid "${left[@]}" || code=$?
  rest=()
  for pid in "${left[@]}"; do
    if [[ $pid != "$done_pid" ]]; then rest+=("$pid"); fi
  done
  left=("${rest[@]}")
  if ((code != 0 && status == 0)); then
    status=$code
    echo "launch/local.sh: a process (pid $done_pid) exited with status $code; stopping the others" >&2
    kill -TERM "${left[@]}" 2>/dev/null || true
  fi
done
exit $status
