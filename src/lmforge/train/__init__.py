"""The one trainer for every objective (causal LM, MLM+NSP, seq2seq, task fine-tuning)."""
