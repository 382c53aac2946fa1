"""Training: the loop (trainer.py), automatic recipe choices (recipe.py), atomic checkpoints (checkpoint.py)."""
