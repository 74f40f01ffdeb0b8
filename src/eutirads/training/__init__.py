"""Training: config, data, loop, checkpoints, cross-validation."""
