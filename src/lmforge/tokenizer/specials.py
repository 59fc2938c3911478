"""Special tokens per model family, and recognising their roles by name."""

from __future__ import annotations

FAMILY_SPECIALS: dict[str, list[str]] = {
    "gpt": ["<|endoftext|>"],
    "bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "seq2seq": ["<pad>", "<s>", "</s>", "<unk>"],
}

ROLES = ("eos", "bos", "pad", "unk", "cls", "sep", "mask")

# The usual names of each role. GPT-2 uses <|endoftext|> as eos, bos and pad.
_ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "eos": ("<|endoftext|>", "</s>", "<eos>", "<|eos|>"),
    "bos": ("<|endoftext|>", "<s>", "<bos>", "<|bos|>"),
    "pad": ("[PAD]", "<pad>", "<|pad|>"),
    "unk": ("[UNK]", "<unk>", "<|unk|>"),
    "cls": ("[CLS]", "<cls>"),
    "sep": ("[SEP]", "<sep>"),
    "mask": ("[MASK]", "<mask>"),
}


def special_tokens_for(family: str, override: list[str] | None = None) -> list[str]:
    return list(override) if override is not None else list(FAMILY_SPECIALS[family])


def assign_roles(tokens: list[str]) -> dict[str, str | None]:
    """Map each role to the first listed token that has one of its usual names."""
    roles: dict[str, str | None] = {}
    for role in ROLES:
        names = _ROLE_NAMES[role]
        roles[role] = next((t for t in tokens if t in names), None)
    if roles["pad"] is None and roles["eos"] == "<|endoftext|>":
        roles["pad"] = roles["eos"]  # GPT convention: pad with eos
    return roles


def infer_family(tokens: list[str]) -> str:
    """Guess the family of a tokenizer that came without our metadata (e.g. a Hub tokenizer.json)."""
    if "[CLS]" in tokens:
        return "bert"
    if "</s>" in tokens:
        return "seq2seq"
    return "gpt"
