"""rlsft: an RL-versus-SFT training-recipe lab for small models' math reasoning."""

__version__ = "0.1.0"
