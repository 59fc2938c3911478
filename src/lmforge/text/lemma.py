"""A small rule-based English lemmatiser (irregular forms + suffix rules) for classic models.

It is deliberately simple: no POS tagging, no dictionary download; good enough to merge
'movies'/'movie' and 'was'/'be' in bag-of-words features.
"""

from __future__ import annotations

IRREGULAR = {
    "am": "be", "is": "be", "are": "be", "was": "be", "were": "be", "been": "be", "being": "be", "'s": "'s",
    "has": "have", "had": "have", "having": "have", "does": "do", "did": "do", "done": "do", "doing": "do",
    "went": "go", "gone": "go", "goes": "go", "made": "make", "said": "say", "got": "get", "gotten": "get",
    "took": "take", "taken": "take", "saw": "see", "seen": "see", "came": "come", "knew": "know",
    "known": "know", "thought": "think", "told": "tell", "found": "find", "gave": "give", "given": "give",
    "felt": "feel", "left": "leave", "began": "begin", "begun": "begin", "wrote": "write", "written": "write",
    "ran": "run", "men": "man", "women": "woman", "children": "child", "people": "person", "feet": "foot",
    "teeth": "tooth", "mice": "mouse", "better": "good", "best": "good", "worse": "bad", "worst": "bad",
    "films": "film", "movies": "movie", "cookies": "cookie", "zombies": "zombie", "calories": "calorie",
    "lies": "lie", "ties": "tie", "dies": "die", "pies": "pie", "series": "series", "species": "species",
    "this": "this", "his": "his", "its": "its", "us": "us", "news": "news",
}
_KEEP = ("ss", "us", "is", "ous")


def lemmatize(word: str) -> str:
    w = word.lower()
    if w in IRREGULAR:
        return IRREGULAR[w]
    if len(w) <= 3 or not w.isalpha():
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("ches", "shes", "xes", "sses", "zes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(_KEEP):
        return w[:-1]
    if w.endswith("ied"):
        return w[:-3] + "y"
    if w.endswith("ing") and len(w) > 5:
        stem = w[:-3]
        return stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz" else stem
    if w.endswith("ed") and len(w) > 4:
        stem = w[:-2]
        return stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "lsz" else stem
    return w


def lemmatize_tokens(tokens: list[str]) -> list[str]:
    return [lemmatize(t) for t in tokens]
