"""A document as a list of editable units, so every augmenter edits words and never breaks entities.

Two NER representations are understood and kept consistent in each copy:

- ``meta.entities = [{"start", "end", "label" (or "type"), ...}]``: character offsets into ``text``
  (end exclusive, Python code points). Each entity, or each group of overlapping ones, becomes one
  locked unit; rendering recomputes every offset (and ``text`` of an entity, when it has one).
- ``meta.tokens`` + ``meta.tags`` (what ``read_conll`` gives): tokens with one tag each, ``text`` the
  tokens joined by a space (or by nothing, for character-per-token Chinese). Each run of non-``O``
  tokens is locked with its original tags; new words are ``O``. Chinese character runs are grouped
  into jieba words for editing and split back into characters.

Only ``word`` units (a letter or ideograph in them) are edited; punctuation, symbols, emoji and
whitespace stay as they are, so offsets never point into the middle of a character sequence.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

from ....text.scripts import is_cjk
from ....text.segment import token_spans
from ...document import Document

WORD, OTHER, ENTITY = "word", "other", "entity"


@dataclass
class Unit:
    text: str
    ws: str = ""  # what follows the unit in the text
    kind: str = WORD
    ents: list[tuple[dict, int, int]] = field(default_factory=list)  # entity, start, end inside the unit
    toks: list[str] | None = None  # the original tokens (token mode), used while the text is unchanged
    tags: list[str] | None = None  # their tags (locked units only)
    orig: str | None = None

    @property
    def editable(self) -> bool:
        return self.kind == WORD


def _kind(text: str) -> str:
    return WORD if any(c.isalpha() for c in text) else OTHER


def doc_lang(doc: Document, lang: str) -> str:
    """'en' or 'zh': the given language, else ``meta.lang``, else a CJK check of the text."""
    if lang in ("en", "zh"):
        return lang
    if doc.meta.get("lang") in ("zh", "en"):
        return doc.meta["lang"]
    return "zh" if is_cjk(doc.text) else "en"


class View:
    """The units of one document plus what is needed to write a copy of it back."""

    def __init__(self, units: list[Unit], prefix: str, lang: str, mode: str, sep: str = " "):
        self.units, self.prefix, self.lang, self.mode, self.sep = units, prefix, lang, mode, sep
        self.char_tokens = False  # token mode: one character per token, so a new word is split into characters

    @property
    def space(self) -> str:
        """What separates an inserted word from its neighbours."""
        if self.mode == "tokens":
            return "" if self.char_tokens and self.lang == "zh" else self.sep
        return "" if self.lang == "zh" else " "

    def clone(self) -> View:
        v = View([replace(u) for u in self.units], self.prefix, self.lang, self.mode, self.sep)
        v.char_tokens = self.char_tokens
        return v

    def words(self) -> list[int]:
        return [i for i, u in enumerate(self.units) if u.editable]

    # -- edits --------------------------------------------------------------------------------
    def replace_word(self, i: int, text: str) -> None:
        self.units[i].text = text

    def insert_positions(self) -> list[int]:
        """Where a new word may go: before unit ``p``; next to a word, never inside an entity group
        or a run of symbols (an emoji sequence), and only at a space in space-separated text."""
        out = []
        for p in range(len(self.units) + 1):
            left = self.units[p - 1] if p else None
            right = self.units[p] if p < len(self.units) else None
            if not ((left and left.editable) or (right and right.editable)):
                continue
            if self.space and left is not None and not left.ws:
                continue
            if right is None and self.space:  # at the very end: only before trailing whitespace
                continue
            out.append(p)
        return out

    def insert_word(self, p: int, text: str) -> None:
        ws = self.space if p < len(self.units) else ""
        self.units.insert(p, Unit(text, ws, WORD))

    def can_delete(self, i: int) -> bool:
        """A word between two tagged runs stays: without it IOB1 tags would merge two entities."""
        if self.mode != "tokens" or i == 0 or i == len(self.units) - 1:
            return self.units[i].editable
        return self.units[i].editable and not (self.units[i - 1].kind == ENTITY and self.units[i + 1].kind == ENTITY)

    def delete_word(self, i: int) -> None:
        gone = self.units.pop(i)
        if i and "\n" not in self.units[i - 1].ws:
            self.units[i - 1].ws = gone.ws  # "the big dog" -> "the dog", "the big, dog" -> "the, dog"

    def swap_words(self, i: int, j: int) -> None:
        a, b = self.units[i], self.units[j]
        self.units[i], self.units[j] = replace(b, ws=a.ws), replace(a, ws=b.ws)

    # -- output -------------------------------------------------------------------------------
    def text_and_starts(self) -> tuple[str, list[int]]:
        parts, starts, pos = [self.prefix], [], len(self.prefix)
        for u in self.units:
            starts.append(pos)
            parts.append(u.text + u.ws)
            pos += len(u.text) + len(u.ws)
        return "".join(parts), starts

    def render(self, doc: Document, new_id: str, method: str) -> Document:
        """A copy of ``doc`` with this view's text, entities/tokens updated and provenance in meta."""
        meta = copy.deepcopy(doc.meta)
        meta["augmented_from"] = doc.meta.get("augmented_from", doc.id)
        meta["augment"] = method
        if self.mode == "tokens":
            toks, tags = [], []
            for u in self.units:
                if u.kind == ENTITY:
                    toks += u.toks or []
                    tags += u.tags or []
                    continue
                if u.toks is not None and u.text == u.orig:
                    pieces = u.toks
                else:
                    pieces = [c for c in u.text if not c.isspace()] if self.char_tokens and self.lang == "zh" \
                        else u.text.split() if self.sep else [u.text]
                toks += pieces
                tags += ["O"] * len(pieces)
            meta["tokens"], meta["tags"] = toks, tags
            return Document(new_id, self.sep.join(toks), meta)
        text, starts = self.text_and_starts()
        if text != doc.text and "tags" not in meta:
            meta.pop("tokens", None)  # a segmentation of the old text would be stale
        if self.mode == "entities":
            ents = []
            for u, s in zip(self.units, starts):
                for ent, a, b in u.ents:
                    e = {**ent, "start": s + a, "end": s + b}
                    if "text" in ent:
                        e["text"] = text[s + a: s + b]
                    ents.append((ent["_i"], e))
            meta["entities"] = [{k: v for k, v in e.items() if k != "_i"} for _, e in sorted(ents, key=lambda x: x[0])]
        return Document(new_id, text, meta)


# ---------------------------------------------------------------------------------------------


def build_view(doc: Document, lang: str) -> View | str:
    """The editable view of ``doc``, or a reason why it cannot be edited safely."""
    lang = doc_lang(doc, lang)
    meta = doc.meta
    if isinstance(meta.get("tokens"), list) and isinstance(meta.get("tags"), list):
        return _token_view(doc, lang)
    ents = meta.get("entities")
    if ents is not None:
        return _entity_view(doc, ents, lang)
    return _text_view(doc.text, [], lang, "text")


def _text_view(text: str, groups: list, lang: str, mode: str) -> View:
    """Units for ``text`` with ``groups`` [(start, end, members)] locked; each unit's ``ws`` is the
    whitespace up to the next unit, the text before the first unit is the view's prefix."""
    pieces: list[tuple[int, int, Unit]] = []
    pos = 0

    def region(lo: int, hi: int) -> None:
        for a, b in token_spans(text[lo:hi], lang):
            pieces.append((lo + a, lo + b, Unit(text[lo + a: lo + b], "", _kind(text[lo + a: lo + b]))))

    for a, b, members in groups:
        region(pos, a)
        pieces.append((a, b, Unit(text[a:b], "", ENTITY, [(e, s - a, t - a) for s, t, e in members])))
        pos = b
    region(pos, len(text))
    for k, (_, b, u) in enumerate(pieces):
        u.ws = text[b: pieces[k + 1][0] if k + 1 < len(pieces) else len(text)]
    prefix = text[: pieces[0][0]] if pieces else text
    return View([u for _, _, u in pieces], prefix, lang, mode)


def _entity_view(doc: Document, ents, lang: str) -> View | str:
    text = doc.text
    if not isinstance(ents, list):
        return "entities_not_a_list"
    spans = []
    for i, e in enumerate(ents):
        if not isinstance(e, dict) or type(e.get("start")) is not int or type(e.get("end")) is not int:
            return "entity_without_int_offsets"
        if not 0 <= e["start"] < e["end"] <= len(text):
            return "entity_offsets_out_of_range"
        if "text" in e and e["text"] != text[e["start"]: e["end"]]:
            return "entity_text_mismatch"
        spans.append((e["start"], e["end"], {**e, "_i": i}))
    spans.sort(key=lambda s: (s[0], -s[1]))
    groups: list[list] = []  # overlapping (nested) entities lock together
    for a, b, e in spans:
        if groups and a < groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], b)
            groups[-1][2].append((a, b, e))
        else:
            groups.append([a, b, [(a, b, e)]])
    return _text_view(text, groups, lang, "entities")


def _token_view(doc: Document, lang: str) -> View | str:
    toks, tags = doc.meta["tokens"], doc.meta["tags"]
    if len(toks) != len(tags) or not all(isinstance(t, str) for t in toks + tags):
        return "tokens_tags_mismatch"
    if doc.text == " ".join(toks):
        sep = " "
    elif doc.text == "".join(toks):
        sep = ""
    else:
        return "text_is_not_the_tokens"
    char_tokens = all(len(t) <= 1 for t in toks)
    units: list[Unit] = []
    k = 0
    while k < len(toks):
        j = k
        locked = tags[k] not in ("O", "")
        while j < len(toks) and (tags[j] not in ("O", "")) == locked:
            j += 1
        run_t, run_g = toks[k:j], tags[k:j]
        if locked:
            units.append(Unit(sep.join(run_t), sep, ENTITY, toks=run_t, tags=run_g))
        elif sep and not (char_tokens and lang == "zh"):
            units += [Unit(t, sep, _kind(t), toks=[t], orig=t) for t in run_t]
        else:  # characters (MSRA, also when read_conll spaced them for a digit) grouped into words
            units += [replace(u, ws=sep) for u in _char_words(run_t, lang)]
        k = j
    if units:
        units[-1].ws = ""
    view = View(units, "", lang, "tokens", sep)
    view.char_tokens = char_tokens
    return view


def _char_words(toks: list[str], lang: str) -> list[Unit]:
    """Unspaced tokens grouped into jieba words, never splitting a token (an emoji of 2 code points)."""
    run = "".join(toks)
    bounds, pos = {0}, 0
    for t in toks:
        pos += len(t)
        bounds.add(pos)
    cuts = sorted(({b for _, b in token_spans(run, lang)} & bounds) | {len(run)})
    units, start, ti = [], 0, 0
    for c in cuts:
        if c <= start:
            continue
        piece, got, n = run[start:c], [], 0
        while ti < len(toks) and n < len(piece):
            got.append(toks[ti])
            n += len(toks[ti])
            ti += 1
        units.append(Unit(piece, "", _kind(piece), toks=got, orig=piece))
        start = c
    return units
