"""Choosing settings: hyperparameter search (``search.py``, Optuna) and cross-validation (``cv.py``).

Both sit above the recipe layer: a trial or a fold is an ordinary recipe run, with dotted-key
overrides, in its own run directory under the recipe's run, so it resumes after a kill like any run.
"""
