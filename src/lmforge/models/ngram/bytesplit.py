"""Whitespace tokenization and word ids straight from the bytes of a text file, with numpy.

``str.split`` on every line and a dict look-up per token cost ~250 ns a token in Python, more than
counting every n-gram afterwards. Here a block of whole lines is split with array operations; Python
only touches each distinct word of a block once (to decode it and give it an id) and the rare token
over 32 bytes. The result is exactly that of ``str.split`` on each line that ``iter_lines`` yields
(lines end at ``\n``, ``\r`` or ``\r\n``; empty ones are skipped), with ids in order of first
appearance as ``Vocab.ids(.., grow=True)`` gives them:

* separators are the ASCII bytes ``str.isspace`` accepts; the non-ASCII ones (NBSP, U+3000, ...) are
  first overwritten with spaces, and UTF-8 never has an ASCII byte inside a multi-byte character, so
  splitting the bytes splits the decoded text in the same places;
* equal tokens are grouped by sorting a hash of their bytes and then checked byte for byte against
  the first token of their group, so a hash collision costs time (a dict does the block), never a
  wrong count; decoding the distinct words checks that the text is UTF-8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from .config import BOS, EOS

# the non-ASCII characters that str.split() splits on (all c > 127 with chr(c).isspace(); a test checks)
UNICODE_SPACES = "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
                 "\u2028\u2029\u202f\u205f\u3000"
_MASK = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], np.uint64)
_U64 = np.dtype("<u8")
_K1, _K2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xFF51AFD7ED558CCD)


class NotUTF8(Exception):
    """The block is not valid UTF-8 (the caller re-reads the file line by line for the error message)."""


class ReservedToken(Exception):
    """The block holds <s> or </s> as a word (the caller finds the line for the error message)."""


def iter_blocks(path: Path, size: int) -> Iterator[bytes]:
    """The file in blocks of about ``size`` bytes, each ending at a line break (the last one: at EOF)."""
    pieces: list[bytes] = []
    with open(path, "rb") as f:
        while chunk := f.read(size):
            cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
            if not cut:  # inside a line longer than the block: keep reading
                pieces.append(chunk)
                continue
            pieces.append(chunk[:cut])
            yield b"".join(pieces)
            pieces = [chunk[cut:]]
    rest = b"".join(pieces)
    if rest:
        yield rest


def blank_unicode_spaces(u: np.ndarray) -> np.ndarray:
    """``u`` with the bytes of each non-ASCII whitespace character set to spaces (offsets unchanged)."""
    lead = np.flatnonzero((u >= 0xC2) & (u <= 0xE3))  # covers the first bytes of all UNICODE_SPACES
    nxt = np.append(u, np.zeros(2, np.uint8))
    b0, b1, b2 = u[lead], nxt[lead + 1], nxt[lead + 2]
    two = (b0 == 0xC2) & ((b1 == 0x85) | (b1 == 0xA0))
    u2000 = ((b2 >= 0x80) & (b2 <= 0x8A)) | (b2 == 0xA8) | (b2 == 0xA9) | (b2 == 0xAF)  # U+2000-200A, 2028/9, 202F
    three = (((b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80))
             | ((b0 == 0xE2) & (b1 == 0x80) & u2000)
             | ((b0 == 0xE2) & (b1 == 0x81) & (b2 == 0x9F))
             | ((b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80)))
    if not (two.any() or three.any()):
        return u
    u = u.copy()
    for k in range(3):
        at = lead[(two | three) if k < 2 else three] + k
        u[at] = 32
    return u


def _group_tokens(data: bytes, u: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group number of each token (groups = distinct byte strings, numbered by first appearance), first token of each.

    A token is (length, its bytes as 8-byte words); up to 32 bytes it is hashed from those words,
    longer ones (rare) from a dict of their bytes. One value sort of ``hash | token index`` groups
    equal hashes with their earliest token first; every token is then compared with the first of its
    group, word by word, so a hash collision can never merge two words (it sends the block to a dict).
    """
    n = len(starts)
    lengths = ends - starts
    pad = np.zeros(len(u) // 8 + 6, _U64)
    pad.view(np.uint8)[:len(u)] = u
    at = np.lib.stride_tricks.as_strided(pad, shape=(len(u) + 25,), strides=(1,))  # the 8 bytes from any offset
    w0 = at[starts] & _MASK[np.minimum(lengths, 8)]  # bytes 0-7, zero past the end
    huge = np.flatnonzero(lengths > 32)
    if len(huge):  # a dict label stands in for the bytes: exact, and told apart from the rest by length > 32
        table: dict[bytes, int] = {}
        w0[huge] = [table.setdefault(data[s:e], len(table)) for s, e in zip(starts[huge].tolist(), ends[huge].tolist())]
    long = np.flatnonzero((lengths > 8) & (lengths <= 32))
    row = np.zeros(n, np.int64)  # token -> its row in w
    row[long] = np.arange(len(long))
    step = np.array([8, 16, 24])
    w = at[starts[long, None] + step] & _MASK[np.clip(lengths[long, None] - step, 0, 8)]  # bytes 8-31
    # hash: multiplying by an odd constant makes the high bits (the ones kept) depend on every bit
    h = w0 * _K1
    h[huge] = (h[huge] ^ _K2) * _K2  # labels are small numbers, as are the keys of 1-byte tokens
    hl = h[long]
    for j in range(3):
        hl = ((hl >> np.uint64(29)) ^ hl ^ w[:, j]) * _K2
    h[long] = hl
    bits = max(n - 1, 1).bit_length()  # the low bits hold the token index, the rest a hash
    s = (h & ~np.uint64((1 << bits) - 1)) | np.arange(n, dtype=np.uint64)
    s.sort()
    perm = (s & np.uint64((1 << bits) - 1)).view(np.int64)
    s >>= np.uint64(bits)
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    at_new = np.flatnonzero(new)
    first = perm[at_new]  # earliest token of each group
    order = np.argsort(first)  # groups by first appearance
    rank = np.empty(len(first), np.int64)
    rank[order] = np.arange(len(first))
    group = np.empty(n, np.int64)
    group[perm] = np.repeat(rank, np.diff(at_new, append=n))
    first = first[order]
    # the check: each token equals the first of its group (a first with another length has no row: row 0)
    same = (lengths == lengths[first][group]) & (w0 == w0[first][group])
    same[long] &= (w == w[row[first[group[long]]]]).all(axis=1)
    if not same.all():
        return _group_by_dict(data, starts, ends)
    return group, first


def _group_by_dict(data: bytes, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_group_tokens`` the slow, simple way (after a hash collision)."""
    table: dict[bytes, int] = {}
    out = np.array([table.setdefault(data[s:e], len(table)) for s, e in zip(starts.tolist(), ends.tolist())], np.int64)
    first = np.full(len(table), len(out), np.int64)
    np.minimum.at(first, out, np.arange(len(out)))
    return out, first


def _decode(u: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> list[str]:
    """The tokens at ``starts`` as str, decoded in one call (NotUTF8 if one is not UTF-8)."""
    span = lengths + 1
    off = np.cumsum(span) - span
    idx = np.arange(int(span.sum())) + np.repeat(starts - off, span)
    buf = u[np.minimum(idx, len(u) - 1)]
    buf[off + lengths] = 10  # tokens hold no newline
    try:
        return buf.tobytes().decode("utf-8").split("\n")[:-1]
    except UnicodeDecodeError:
        raise NotUTF8 from None


def encode_block(data: bytes, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Word ids of the non-empty lines of ``data`` (``index`` grows by the new words), as ``encode_sentences``.

    Returns (ids of ``<s> w.. </s> <s> ..``, the index of each sentence's <s>).
    Raises NotUTF8 or ReservedToken (the caller finds the line).
    """
    u = np.frombuffer(data, np.uint8)
    if not data.isascii():
        u = blank_unicode_spaces(u)
    word = np.zeros(len(u) + 2, bool)  # byte i of a token: word[i + 1]
    word[1:-1] = ~((u == 32) | ((u - 9) < 5) | ((u - 28) < 4))  # not \t\n\v\f\r, \x1c-\x1f or space
    edge = np.flatnonzero(word[1:] != word[:-1])  # where a token starts or ends
    starts, ends = edge[0::2].copy(), edge[1::2].copy()
    if not len(starts):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # sentences: the tokens between two line breaks, empty lines dropped
    breaks = np.flatnonzero((u == 10) | (u == 13))
    lengths = np.diff(np.concatenate([[0], np.searchsorted(starts, breaks), [len(starts)]]))
    lengths = lengths[lengths > 0]

    group, first = _group_tokens(data, u, starts, ends)  # token bytes are the same in data and u
    words = _decode(u, starts[first], ends[first] - starts[first])
    found = list(map(index.get, words))
    if None in found:  # new words get the next ids, in order of first appearance
        new = [w for w, i in zip(words, found) if i is None]
        index.update(zip(new, range(len(index), len(index) + len(new))))
        found = list(map(index.__getitem__, words))
    if index[BOS] in found or index[EOS] in found:
        raise ReservedToken

    # <s> w.. </s> per sentence
    n_sent = len(lengths)
    span = lengths + 2
    sent_start = np.cumsum(span) - span
    ids = np.empty(len(group) + 2 * n_sent, np.int64)
    dest = np.arange(len(group))
    dest += np.repeat(2 * np.arange(n_sent) + 1, lengths)  # 2 specials per earlier sentence, and <s>
    ids[dest] = np.array(found, np.int64)[group]
    ids[sent_start] = index[BOS]
    ids[sent_start + span - 1] = index[EOS]
    return ids, sent_start
