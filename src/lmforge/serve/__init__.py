"""``lmforge serve``: one FastAPI process serving lmforge models by name.

OpenAI-compatible generation and embeddings, task endpoints over the task interface, batching
(dynamic for encoders, continuous for decoders), limits, metrics and a playground.
"""
