#!/usr/bin/env bash
# Run N JAX processes with fake CPU devices on this machine, as one multi-process job (for tests
# of the multi-host code paths without a pod).
#
# Usage (from the repository root):
#   launch/local_multiprocess.sh [-n PROCESSES] [-d DEVICES_PER_PROCESS] [-p PORT] [-l LOG_DIR] \
#       [-m MODULE] -- [ARGS...]
#   launch/local_multiprocess.sh -n 2 -d 4 -- --config=configs/lm/llama.py:tiny \
#       --config.train.steps=3 --workdir=/tmp/mp
#
# Process i runs `python -m MODULE --coordinator_address=127.0.0.1:PORT --num_processes=N
# --process_id=i ARGS...` (MODULE defaults to loong_jax.train_lm) with JAX_PLATFORMS=cpu and
# DEVICES_PER_PROCESS fake devices (default 2 processes x 4 devices, a free port, logs in a new
# temporary directory as process_i.log). Exits 0 when every process does; when one fails, stops
# the others and prints the tail of each log.
set -euo pipefail

processes=2
devices=4
port=""
log_dir=""
module="loong_jax.train_lm"
while getopts "n:d:p:l:m:h" opt; do
  case "${opt}" in
    n) processes="${OPTARG}" ;;
    d) devices="${OPTARG}" ;;
    p) port="${OPTARG}" ;;
    l) log_dir="${OPTARG}" ;;
    m) module="${OPTARG}" ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [[ "${1:-}" == "--" ]]; then
  shift
fi
if ! [[ "${processes}" =~ ^[1-9][0-9]*$ && "${devices}" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: -n (processes) and -d (devices per process) must be positive integers" >&2
  exit 2
fi

python="${PYTHON:-python3}"
if [[ -z "${port}" ]]; then
  port="$("${python}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')"
fi
if [[ -z "${log_dir}" ]]; then
  log_dir="$(mktemp -d "${TMPDIR:-/tmp}/loong-jax-local.XXXXXX")"
fi
mkdir -p "${log_dir}"

pids=()
stop_all() {
  for pid in "${pids[@]}"; do
    kill "${pid}" 2>/dev/null || true
  done
}
trap 'stop_all; exit 130' INT TERM

echo "${processes} processes x ${devices} CPU devices, coordinator 127.0.0.1:${port}," \
  "logs in ${log_dir}"
for ((i = 0; i < processes; i++)); do
  JAX_PLATFORMS=cpu \
  XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${devices}" \
    "${python}" -m "${module}" \
      --coordinator_address="127.0.0.1:${port}" \
      --num_processes="${processes}" \
      --process_id="${i}" \
      "$@" > "${log_dir}/process_${i}.log" 2>&1 &
  pids+=("$!")
done

# Poll rather than `wait` in order, so that a failure of any process stops the rest at once (the
# others would otherwise wait for it at the coordinator until its time-out).
status=0
running=("${pids[@]}")
while [[ "${#running[@]}" -gt 0 && "${status}" -eq 0 ]]; do
  still=()
  for pid in "${running[@]}"; do
    if kill -0 "${pid}" 2>/dev/null; then
      still+=("${pid}")
    elif ! wait "${pid}"; then
      status=1
    fi
  done
  running=("${still[@]+"${still[@]}"}")
  if [[ "${status}" -ne 0 ]]; then
    stop_all
  elif [[ "${#running[@]}" -gt 0 ]]; then
    sleep 0.5
  fi
done
wait || true

if [[ "${status}" -ne 0 ]]; then
  for ((i = 0; i < processes; i++)); do
    echo "---- process ${i} (${log_dir}/process_${i}.log) ----" >&2
    tail -n 20 "${log_dir}/process_${i}.log" >&2
  done
  echo "error: a process failed; the others were stopped" >&2
  exit 1
fi
echo "all ${processes} processes finished; logs in ${log_dir}"
