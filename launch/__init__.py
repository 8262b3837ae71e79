"""Launchers: AOT compile for a TPU topology, config sweeps, pod / SLURM / local scripts."""
