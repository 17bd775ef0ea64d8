"""The authors' released model: reading TF checkpoints and importing them into model directories."""
