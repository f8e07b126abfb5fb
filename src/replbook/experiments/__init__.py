"""Experiments: the training loops and sweeps each chapter notebook runs, one module per paper."""
