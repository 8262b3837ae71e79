#!/usr/bin/env bash
# Start a training run on every worker of a Cloud TPU VM pod slice (optionally creating it first).
#
# Usage (from the repository root, with gcloud authenticated):
#   launch/tpu_pod.sh --name NAME --zone ZONE [--project PROJECT] \
#       [--create --accelerator v5p-128 --version v2-alpha-tpuv5] [--detach] \
#       [--module loong_jax.train_lm] -- TRAIN_ARGS...
#   launch/tpu_pod.sh --name my-pod --zone us-east5-a -- \
#       --config=configs/lm/llama.py:7b --workdir=gs://my-bucket/runs/7b
#
# Steps: (1) with --create, `gcloud compute tpus tpu-vm create` the slice; (2) pack this checkout
# (tracked and untracked, not ignored files) and copy it to every worker; (3) on every worker
# (`--worker=all`), unpack it into ~/loong-jax, `pip install -e ".[tpu]"` and run
# `python3 -m MODULE TRAIN_ARGS...`. Every worker is one JAX process; jax.distributed finds the
# pod's coordinator and process ids from the TPU environment, so no distributed flags are needed.
# The workdir must be reachable from every worker (a gs:// bucket). Without --detach the command
# streams all workers' output and stops when they do; with --detach each worker runs the job in
# the background, logging to ~/loong-jax/train.log.
set -euo pipefail

name=""
zone=""
project=""
create=0
accelerator=""
version=""
detach=0
module="loong_jax.train_lm"
usage() { sed -n '2,20p' "$0"; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --create) create=1; shift ;;
    --accelerator) accelerator="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --detach) detach=1; shift ;;
    --module) module="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "error: unknown option $1 (train_lm's flags go after --)" >&2; usage ;;
  esac
done
if [[ -z "${name}" || -z "${zone}" ]]; then
  echo "error: --name and --zone are required" >&2
  usage
fi
if [[ $# -eq 0 ]]; then
  echo "error: give the training flags after --, e.g." \
    "-- --config=FILE:variant --workdir=gs://..." >&2
  usage
fi

gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--zone="${zone}")
if [[ -n "${project}" ]]; then
  where+=(--project="${project}")
fi

if [[ "${create}" -eq 1 ]]; then
  if [[ -z "${accelerator}" || -z "${version}" ]]; then
    echo "error: --create needs --accelerator (e.g. v5p-128) and --version (the TPU VM runtime)" >&2
    exit 2
  fi
  "${gcloud_tpu[@]}" create "${name}" "${where[@]}" \
    --accelerator-type="${accelerator}" --version="${version}"
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
archive="$(mktemp "${TMPDIR:-/tmp}/loong-jax.XXXXXX.tar.gz")"
trap 'rm -f "${archive}"' EXIT
(cd "${repo}" && git ls-files -z --cached --others --exclude-standard \
  | tar --null -czf "${archive}" -T -)
"${gcloud_tpu[@]}" scp "${archive}" "${name}:loong-jax.tar.gz" --worker=all "${where[@]}"

# The remote command line, with every training flag quoted for the workers' shell.
printf -v train_args ' %q' "$@"
run="python3 -m ${module}${train_args}"
if [[ "${detach}" -eq 1 ]]; then
  run="{ setsid nohup ${run} > ~/loong-jax/train.log 2>&1 < /dev/null & }"
fi
remote="set -euo pipefail; rm -rf ~/loong-jax && mkdir -p ~/loong-jax \
&& tar -xzf ~/loong-jax.tar.gz -C ~/loong-jax && cd ~/loong-jax \
&& python3 -m pip install -q -e '.[tpu]' && ${run}"
"${gcloud_tpu[@]}" ssh "${name}" --worker=all "${where[@]}" --command="${remote}"
if [[ "${detach}" -eq 1 ]]; then
  echo "started on every worker of ${name}; follow with:"
  echo "  gcloud compute tpus tpu-vm ssh ${name} --zone=${zone} --worker=0" \
    "--command='tail -f ~/loong-jax/train.log'"
fi
