"""Hyperparameter sweeps of cross-encoder training on Ray Tune (public API in :mod:`raycross.tune`).

Modules: ``space`` (search-space specs -> Tune distributions, checks), ``metrics`` (which metric the
evaluations report), ``trial`` (one trial: build, train, report), ``train_callback`` (trials with Ray
Train workers), ``results`` (table, CSV, best-model export), ``sweep`` (``tune_cross_encoder``),
``from_config`` (``raycross tune config.yaml``).
"""
