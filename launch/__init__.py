"""Launchers: ahead-of-time compile for a TPU topology, config sweeps, pod / SLURM / local scripts."""
