"""Training: the shared skeleton (schedule, run log, checkpoints, time budget), DDP helpers, and the two loops."""
