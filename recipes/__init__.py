"""The recipes, one file each: `grpo.py`, `sft.py`, `distill.py`.

Each exports `Config` (its YAML's typed form), `main(cfg, resume=False)`, `training_args(cfg)`
(TRL's config object it trains with) and `estimate(cfg, params=None)` (upper-bound compute).
`rlsft.launch.RECIPES` registers them by the name a config's `recipe:` key gives.
"""
