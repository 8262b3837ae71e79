"""launch/*.sh and gpu_slurm.sbatch: real local processes; gcloud / SLURM commands through fakes."""

import json
import os
import pathlib
import stat
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


def _fake(directory: pathlib.Path, name: str, body: str):
  path = directory / name
  path.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body)
  path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _env(**extra):
  python_bin = os.path.dirname(os.path.realpath(sys.executable))
  return {"PATH": f"{python_bin}:{BASE_PATH}", "PYTHON": sys.executable, **extra}


def test_local_multiprocess_runs_one_job_across_processes(tmp_path):
  out = subprocess.run(
      ["launch/local_multiprocess.sh", "-n", "2", "-d", "4", "-l", str(tmp_path), "-m",
       "tests.launch.distributed_probe"],
      cwd=REPO, capture_output=True, text=True, timeout=300, env=_env())
  assert out.returncode == 0, out.stdout + out.stderr
  reports = []
  for i in range(2):
    lines = (tmp_path / f"process_{i}.log").read_text().splitlines()
    reports.append(json.loads(next(line for line in lines if line.startswith("{"))))
  # 4 devices hold 1.0 (process 0) and 4 hold 2.0 (process 1): the sum sees both processes.
  assert reports == [{"process": i, "processes": 2, "devices": 8, "sum": 12.0} for i in range(2)]


def test_local_multiprocess_stops_and_reports_when_a_process_fails(tmp_path):
  out = subprocess.run(
      ["launch/local_multiprocess.sh", "-n", "2", "-l", str(tmp_path), "-m", "no_such_module"],
      cwd=REPO, capture_output=True, text=True, timeout=120, env=_env())
  assert out.returncode == 1
  assert "No module named no_such_module" in out.stderr
  assert "error: a process failed; the others were stopped" in out.stderr


def test_tpu_pod_creates_copies_and_starts_on_every_worker(tmp_path):
  log = tmp_path / "gcloud.log"
  _fake(tmp_path, "gcloud", f"""
echo "$*" >> {log}
if [[ "$4" == scp ]]; then tar -tzf "$5" > {tmp_path}/archive.txt; fi
""")
  out = subprocess.run(
      ["launch/tpu_pod.sh", "--name", "pod", "--zone", "us-east5-a", "--create", "--accelerator",
       "v5p-128", "--version", "v2-alpha-tpuv5", "--", "--config=configs/lm/llama.py:7b",
       "--workdir=gs://bucket/run one"],
      cwd=REPO, capture_output=True, text=True, timeout=60,
      env=_env(PATH=f"{tmp_path}:{BASE_PATH}"))
  assert out.returncode == 0, out.stderr
  create, scp, ssh = log.read_text().splitlines()
  assert create == ("compute tpus tpu-vm create pod --zone=us-east5-a "
                    "--accelerator-type=v5p-128 --version=v2-alpha-tpuv5")
  assert scp.endswith("pod:loong-jax.tar.gz --worker=all --zone=us-east5-a")
  assert ssh.startswith("compute tpus tpu-vm ssh pod --worker=all --zone=us-east5-a --command=")
  assert "python3 -m pip install -q -e '.[tpu]'" in ssh
  assert ssh.endswith("python3 -m loong_jax.train_lm --config=configs/lm/llama.py:7b "
                      "--workdir=gs://bucket/run\\ one")
  packed = (tmp_path / "archive.txt").read_text().splitlines()
  assert "launch/tpu_pod.sh" in packed and "setup.cfg" in packed
  # Detached: only the training process goes to the background, after the install.
  log.unlink()
  out = subprocess.run(
      ["launch/tpu_pod.sh", "--name", "pod", "--zone", "z", "--detach", "--", "--workdir=gs://b"],
      cwd=REPO, capture_output=True, text=True, timeout=60,
      env=_env(PATH=f"{tmp_path}:{BASE_PATH}"))
  assert out.returncode == 0, out.stderr
  ssh = log.read_text().splitlines()[-1]
  assert ssh.endswith("-e '.[tpu]' && { setsid nohup python3 -m loong_jax.train_lm "
                      "--workdir=gs://b > ~/loong-jax/train.log 2>&1 < /dev/null & }")


def test_slurm_script_starts_one_process_per_gpu_with_distributed_flags(tmp_path):
  _fake(tmp_path, "scontrol", 'printf "gpu-node-1\\ngpu-node-2\\n"\n')
  # srun: run the task command (after srun's own options) as 4 tasks, 2 per node.
  _fake(tmp_path, "srun", """
while [[ "$1" == --* ]]; do shift; done
for i in 0 1 2 3; do
  SLURM_PROCID=$i SLURM_LOCALID=$((i % 2)) SLURM_NTASKS=4 SLURM_NNODES=2 \\
    CUDA_VISIBLE_DEVICES=4,5 "$@"
done
""")
  _fake(tmp_path, "fake-python", 'echo "gpu=${CUDA_VISIBLE_DEVICES} $*"\n')
  out = subprocess.run(
      ["bash", "launch/gpu_slurm.sbatch", "--config=configs/lm/llama.py:7b", "--workdir=/runs/a b"],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env=_env(PATH=f"{tmp_path}:{BASE_PATH}", PYTHON=str(tmp_path / "fake-python"),
               SLURM_JOB_NODELIST="gpu-node-[1-2]", SLURM_JOB_ID="7", SLURM_NTASKS="4",
               SLURM_JOB_NUM_NODES="2"))
  assert out.returncode == 0, out.stdout + out.stderr
  lines = [line for line in out.stdout.splitlines() if line.startswith("gpu=")]
  assert lines == [
      f"gpu={4 + i % 2} -m loong_jax.train_lm --coordinator_address=gpu-node-1:12355 "
      f"--num_processes=4 --process_id={i} --config=configs/lm/llama.py:7b --workdir=/runs/a b"
      for i in range(4)], out.stdout + out.stderr
