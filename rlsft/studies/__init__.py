"""Running studies: the matrix of arms x seeds from a study YAML (study.py), on local worker
processes or a Slurm job array (executors.py), resumable and archived."""
