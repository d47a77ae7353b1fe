"""Training and inference engines: optimizer and schedule, trainer, distributed set-up,
dataset inference."""
