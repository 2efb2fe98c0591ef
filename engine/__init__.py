"""Engine: training and evaluation loops, metrics, checkpoints, export orchestration, loggers."""
