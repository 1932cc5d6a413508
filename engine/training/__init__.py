"""Training a run: the trainer, its bounded history, checkpoints and the thread choice."""
