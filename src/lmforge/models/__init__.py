"""Plain-PyTorch model families; HF layouts only at the boundary (hf.py)."""
