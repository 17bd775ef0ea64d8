"""Training: the shared skeleton (the loop, schedule, run log, checkpoints, time budget), DDP helpers, and the two trainers."""
