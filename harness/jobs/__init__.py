"""What the commands run: building the base model, training one arm, evaluating a checkpoint, comparing two arms, benchmarks."""
