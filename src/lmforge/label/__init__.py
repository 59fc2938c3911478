"""Labeling: projects (SQLite), import/export (jsonl, CoNLL, Label Studio), agreement, the annotation page.

Submodules are imported where used; importing this package loads nothing heavy.
"""
