"""The recipes, one file each: `grpo.py`, `sft.py`, `distill.py`.

Each exports `Config` (its YAML's typed form), `main(cfg, resume=False)`, `training_args(cfg)`
(TRL's config object it trains with) and `estimate(cfg, params=None)` (upper-bound compute);
a recipe with a pre-flight signal check also exports `probe(cfg, args, model, tokenizer,
train_set)`, which `rlsft probe` runs (GRPO's).
`rlsft.launch.RECIPES` registers them by the name a config's `recipe:` key gives.
"""
