"""ARPA back-off files (the text format of SRILM, KenLM's lmplz/build_binary and the ``kenlm`` module).

    \\data\\
    ngram 1=V
    ...
    \\1-grams:
    log10p<TAB>w<TAB>log10bow
    ...
    \\N-grams:
    log10p<TAB>w1 ... wN
    \\end\\

Values are written as the shortest decimal that reads back as the same float32 (what KenLM stores),
so write -> read -> write is byte-identical and a loaded file gives bit-identical tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError
from .config import BOS, EOS, UNK
from .counts import pack

HINT = "the file must follow the ARPA layout (\\data\\, ngram n=count, \\n-grams: sections, \\end\\)"


_NP2 = hasattr(np, "strings") and hasattr(getattr(np, "dtypes", None), "StringDType")
STR = np.dtypes.StringDType() if _NP2 else object
_add = np.strings.add if _NP2 else np.add  # numpy 2: C loops over strings; object arrays run at Python speed


def _fmt(values: np.ndarray) -> np.ndarray:
    """Shortest decimal of each float32 that reads back as the same float32 (numpy's Dragon4 repr)."""
    vals = np.asarray(values, np.float32)
    if _NP2:
        return vals.astype(STR)
    return np.array([str(v) for v in vals], dtype=object)  # numpy < 2: str(np.float32) is the shortest too


def word_ids(keys: list[np.ndarray | None], vocab_size: int) -> list[np.ndarray]:
    """(M, n) word-id matrix of every order, rebuilt from the prefix-index keys."""
    mats = [np.arange(vocab_size, dtype=np.int64)[:, None]]
    for n in range(1, len(keys)):
        parent = (keys[n] >> np.uint64(32)).astype(np.int64)
        last = (keys[n] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        mats.append(np.hstack([mats[n - 1][parent], last[:, None]]))
    return mats


def write_arpa(path: str | Path, words: list[str], keys: list[np.ndarray | None], logp: list[np.ndarray],
               bow: list[np.ndarray]) -> Path:
    path = Path(path)
    order = len(logp)
    vocab = np.array(words, dtype=STR)
    mats = word_ids(keys, len(words))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\\data\\\n")
        for n in range(order):
            f.write(f"ngram {n + 1}={len(logp[n])}\n")
        for n in range(order):
            f.write(f"\n\\{n + 1}-grams:\n")
            add = _add
            text = vocab[mats[n][:, 0]]
            for j in range(1, n + 1):
                text = add(add(text, " "), vocab[mats[n][:, j]])
            lines = add(add(_fmt(logp[n]), "\t"), text)
            if n < order - 1:
                lines = add(add(lines, "\t"), _fmt(bow[n]))
            if len(lines):
                f.write("\n".join(lines.tolist()))
                f.write("\n")
        f.write("\n\\end\\\n")
    tmp.replace(path)
    return path


def _float(text: str, path: Path, lineno: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{path}:{lineno}: '{text}' is not a number", HINT) from None


def read_arpa(path: str | Path) -> dict:
    """``{"words", "keys", "logp", "bow"}`` of an ARPA file (``.gz`` too); any layout problem is an InputError naming the line.

    The vocabulary is reordered so <unk>, <s>, </s> are ids 0, 1, 2; a missing <unk> is added with
    log10 p = -100, as KenLM does. Every n-gram's (n-1)-word prefix must be in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ARPA file not found: {path}", "check the path")
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        import gzip

        raw = gzip.decompress(raw)
    try:
        lines = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8", "ARPA files are UTF-8 text") from None
    i, total = 0, len(lines)

    def skip_blank() -> None:
        nonlocal i
        while i < total and not lines[i].strip():
            i += 1

    while i < total and lines[i].strip() != "\\data\\":
        i += 1
    if i == total:
        raise InputError(f"{path}: no \\data\\ header, so this is not an ARPA file", HINT)
    i += 1
    declared: list[int] = []
    skip_blank()
    while i < total and lines[i].strip().startswith("ngram "):
        head, _, num = lines[i].strip()[6:].partition("=")
        try:
            n, count = int(head), int(num)
        except ValueError:
            raise InputError(f"{path}:{i + 1}: bad header line '{lines[i].strip()}'", "write it as ngram N=count") from None
        if n != len(declared) + 1 or count < 0:
            raise InputError(f"{path}:{i + 1}: header line '{lines[i].strip()}' is out of sequence",
                             "list ngram 1=..., ngram 2=... in order")
        declared.append(count)
        i += 1
    if not declared:
        raise InputError(f"{path}:{i + 1}: the \\data\\ section lists no 'ngram N=count' lines", HINT)
    order = len(declared)
    entries: list[tuple[list[list[str]], list[float], list[float], list[int]]] = []
    for n in range(1, order + 1):
        skip_blank()
        want = f"\\{n}-grams:"
        if i == total or lines[i].strip() != want:
            found = f"found '{lines[i].strip()[:40]}'" if i < total else "the file ends"
            raise InputError(f"{path}:{min(i + 1, total)}: expected the section '{want}' but {found}",
                             f"the header declares {order} orders; add the missing section or fix the header")
        i += 1
        grams, probs, bows, where = [], [], [], []
        while i < total and lines[i].strip() and not lines[i].startswith("\\"):
            parts = lines[i].split()
            if len(parts) not in (n + 1, n + 2) or (n == order and len(parts) != n + 1):
                raise InputError(f"{path}:{i + 1}: a {n}-gram line needs log10p, {n} word(s)"
                                 f"{' and an optional back-off' if n < order else ''}; got {len(parts)} fields", HINT)
            probs.append(_float(parts[0], path, i + 1))
            grams.append(parts[1: n + 1])
            bows.append(_float(parts[n + 1], path, i + 1) if len(parts) == n + 2 else 0.0)
            where.append(i + 1)
            i += 1
        if len(grams) != declared[n - 1]:
            raise InputError(f"{path}:{i + 1}: section '{want}' has {len(grams)} entries but the header says "
                             f"ngram {n}={declared[n - 1]}", "fix the count in the \\data\\ header")
        entries.append((grams, probs, bows, where))
    skip_blank()
    if i == total or lines[i].strip() != "\\end\\":
        found = f"found '{lines[i].strip()[:40]}'" if i < total else "the file ends (truncated?)"
        raise InputError(f"{path}:{min(i + 1, total)}: expected '\\end\\' but {found}", HINT)
    return _tables(path, entries)


def _tables(path: Path, entries) -> dict:
    grams, probs, bows, where = entries[0]
    uni = [g[0] for g in grams]
    index = {UNK: 0, BOS: 1, EOS: 2}
    for w in uni:
        index.setdefault(w, len(index))
    if len(index) != len(uni) + (UNK not in set(uni)):
        raise InputError(f"{path}: a word is listed twice among the 1-grams", "each n-gram may appear once")
    for special in (BOS, EOS):
        if special not in set(uni):
            raise InputError(f"{path}: the 1-grams lack {special}", "every ARPA model needs <s> and </s>")
    v = len(index)
    ids = np.array([index[w] for w in uni], np.int64)
    logp = [np.full(v, -100.0, np.float32)]
    bow = [np.zeros(v, np.float32)]
    logp[0][ids] = probs
    bow[0][ids] = bows
    keys: list[np.ndarray | None] = [None]
    for n in range(1, len(entries)):
        grams, probs, bows, where = entries[n]
        try:
            mat = np.array([[index[w] for w in g] for g in grams], np.int64).reshape(len(grams), n + 1)
        except KeyError as err:
            line = next(where[j] for j, g in enumerate(grams) if err.args[0] in g)
            raise InputError(f"{path}:{line}: word '{err.args[0]}' is not among the 1-grams",
                             "every word of an n-gram must be a 1-gram") from None
        prefix = mat[:, 0]
        for j in range(1, n):  # index of the j+1-word prefix, one order at a time
            q = pack(prefix, mat[:, j])
            s = np.searchsorted(keys[j], q)
            s[s == len(keys[j])] = 0
            missing = np.flatnonzero(keys[j][s] != q) if len(q) else []
            if len(missing):
                r = int(missing[0])
                raise InputError(f"{path}:{where[r]}: the {n + 1}-gram '{' '.join(grams[r])}' has no "
                                 f"{j + 1}-gram '{' '.join(grams[r][: j + 1])}' in the file",
                                 "an ARPA model must list every context it extends")
            prefix = s
        k = pack(prefix, mat[:, n])
        perm = np.argsort(k, kind="stable")
        k = k[perm]
        dup = np.flatnonzero(k[1:] == k[:-1])
        if len(dup):
            r = int(perm[dup[0] + 1])
            raise InputError(f"{path}:{where[r]}: the {n + 1}-gram '{' '.join(grams[r])}' is listed twice",
                             "each n-gram may appear once")
        keys.append(k)
        logp.append(np.asarray(probs, np.float32)[perm])
        bow.append(np.asarray(bows, np.float32)[perm])
    words = list(index)
    return {"words": words, "keys": keys, "logp": logp, "bow": bow[: len(entries) - 1]}
