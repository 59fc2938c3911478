"""Fine-tuning tasks: how to read the data, which head, which metrics, how to predict."""
