"""PII redaction with typed placeholders: <EMAIL>, <PHONE>, <IP>, <CREDIT_CARD>, <CN_ID>.

Checksums keep false positives down: a credit card must pass Luhn, a Chinese resident ID its
ISO 7064 check digit and a real birth date, an IPv6 candidate must parse. Order matters: IDs and
cards are replaced before the phone pattern could eat their digits.
"""

from __future__ import annotations

import datetime
import ipaddress
import re

from ..config import PIIConfig
from ..document import Document
from .base import Step

# look-arounds on ASCII word characters only: ``\w`` also matches Chinese characters, so an address
# written straight between them (请联系zhang@qq.com获取) would never match
EMAIL = re.compile(r"(?<![A-Za-z0-9_.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9_-])")
CN_ID = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx](?![0-9A-Za-z])")
CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
CN_MOBILE = re.compile(r"(?<!\d)(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"  # international
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[.-]\d{3}[.-]\d{4})(?![\w])"  # North American
)
IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{1,4}){0,6}(?![\w:])|(?<![\w:])::(?:[0-9A-Fa-f]{1,4}:?){1,7}(?![\w:])")

_DIGIT = re.compile(r"\d")
_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_ID_CHECK = "10X98765432"


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def cn_id_ok(s: str) -> bool:
    s = s.upper()
    if len(s) != 18 or not s[:17].isdigit():
        return False
    try:
        datetime.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return _ID_CHECK[sum(int(a) * w for a, w in zip(s[:17], _ID_WEIGHTS)) % 11] == s[17]


_GROUP = re.compile(r"\d+")


def _card_layout(lens: list[int]) -> bool:
    """How card numbers are printed: one run of 13-19 digits, groups of four (the last 1-4), or
    Amex's 4-6-5. Only these are tried inside a longer match, so other digit runs stay as they are."""
    total = sum(lens)
    if not 13 <= total <= 19:
        return False
    if len(lens) == 1 or lens == [4, 6, 5] or lens == [4, 6, 4]:
        return True
    return all(n == 4 for n in lens[:-1]) and 1 <= lens[-1] <= 4


def _card(m: re.Match) -> str:
    """The match, or the longest run of its digit groups that is a card number (13-19 digits, Luhn):
    a card after another number and a space ("order 123 4111 1111 1111 1111") starts the match at
    the earlier number, and the whole fails the Luhn check."""
    s = m.group(0)
    digits = re.sub(r"\D", "", s)
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return "<CREDIT_CARD>"
    groups = [(g.start(), g.end()) for g in _GROUP.finditer(s)]
    best = None
    for i in range(len(groups)):
        for j in range(len(groups), i, -1):
            lens = [b - a for a, b in groups[i:j]]
            if not _card_layout(lens):
                continue
            d = "".join(s[a:b] for a, b in groups[i:j])
            if luhn_ok(d) and (best is None or len(d) > best[0]):
                best = (len(d), groups[i][0], groups[j - 1][1])
    if best is None:
        return s
    return s[:best[1]] + "<CREDIT_CARD>" + s[best[2]:]


def _cn_id(m: re.Match) -> str:
    return "<CN_ID>" if cn_id_ok(m.group(0)) else m.group(0)


def _ipv6(m: re.Match) -> str:
    try:
        ipaddress.IPv6Address(m.group(0))
    except ValueError:
        return m.group(0)
    return "<IP>"


def _phone(m: re.Match) -> str:
    digits = sum(ch.isdigit() for ch in m.group(0))
    return "<PHONE>" if 7 <= digits <= 15 else m.group(0)


def redact(text: str, kinds: list[str] | tuple[str, ...] = ("email", "phone", "ip", "credit_card", "cn_id")
           ) -> tuple[str, dict[str, int]]:
    """(redacted text, replacements per kind)."""
    counts: dict[str, int] = {}

    def sub(kind: str, rx: re.Pattern, repl, placeholder: str) -> None:
        nonlocal text
        new = rx.sub(repl, text)
        if new != text:
            counts[kind] = counts.get(kind, 0) + new.count(placeholder) - text.count(placeholder)
            text = new

    has_digit = _DIGIT.search(text) is not None
    if "email" in kinds and "@" in text:
        sub("email", EMAIL, "<EMAIL>", "<EMAIL>")
    if has_digit:
        if "cn_id" in kinds:
            sub("cn_id", CN_ID, _cn_id, "<CN_ID>")
        if "credit_card" in kinds:
            sub("credit_card", CARD, _card, "<CREDIT_CARD>")
        if "ip" in kinds:
            sub("ip", IPV4, "<IP>", "<IP>")
        if "phone" in kinds:
            sub("phone", CN_MOBILE, "<PHONE>", "<PHONE>")
            sub("phone", PHONE, _phone, "<PHONE>")
    if "ip" in kinds and "::" in text or text.count(":") >= 3:
        if "ip" in kinds:
            sub("ip", IPV6, _ipv6, "<IP>")
    return text, counts


class PII(Step):
    name = "pii"

    def __init__(self, cfg: PIIConfig):
        super().__init__()
        self.kinds = tuple(cfg.kinds)

    def process(self, doc: Document) -> Document | str:
        text, counts = redact(doc.text, self.kinds)
        if counts:
            doc.text = text
            doc.meta["pii"] = counts
            self.stats.counters.update(counts)
        return doc
