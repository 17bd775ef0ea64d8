"""Training and evaluation data: sources and splits, on-the-fly mixtures, file pairs, scene/tag sets."""
