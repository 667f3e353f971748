"""rlsft: an RL-versus-SFT training-recipe lab for small models' math reasoning.

    rlsft/scoring/   tasks, verifier, language metric, rewards, metrics, score and eval
    rlsft/runs/      the run folder (RunFolder), its typed record (RunRecord), compute accounting, provenance
    rlsft/studies/   running studies: the arms x seeds matrix, local workers or Slurm
    rlsft/verdicts/  judging runs: the claims' rules, reports, plots, the sweep's tie rule
    rlsft/bench/     benchmarking the machine: `rlsft bench`, the GPU check
    rlsft/micro/     the micro world: generator, corpus, tokenizer, pretraining, shipped models
    rlsft/trainer.py what every recipe shares around a TRL trainer
    rlsft/launch.py  the recipe registry, pipelines and dry runs
    rlsft/cli.py     the `rlsft` command
The recipes themselves are in recipes/ (one file each).
"""

import rlsft.micro.tasks  # noqa: F401  (the micro world adds its tasks to the task registry)

__version__ = "0.1.0"
