"""Running a training: the loop and its parts (run folder, checkpoints, epochs, evaluation,
tracking), multi-worker settings and fault injection. Imports nothing heavy by itself."""
