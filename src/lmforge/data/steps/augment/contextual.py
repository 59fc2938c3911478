"""Contextual substitution (Kobayashi, 2018): words replaced by what a masked LM predicts in their place.

The step receives a ``FillMask`` callable (a model-backed data step gets a predictor; data/ never
loads models itself): given ``(text before, text after)`` pairs it returns, for each, the candidate
words for the one masked token between them, best first. ``MLMFiller`` is that callable over our
BERT (its MLM head) or an imported Hugging Face BERT, built by the caller from a loaded model and
tokenizer. English replaces whole words; Chinese BERTs predict one character, so in Chinese single
characters of words are replaced. Stop words and entities are never replaced; each choice is drawn
from the ``top_k`` candidates with the document's seeded generator, so runs repeat exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ....text.scripts import CJK_RE
from ....text.stopwords import stopwords
from ...document import Document
from ..base import Result
from .base import TRIES, Augmenter, Options
from .eda import match_case
from .units import WORD, View

FillMask = Callable[[list[tuple[str, str]]], list[list[str]]]


@dataclass
class ContextualOptions(Options):
    p: float = 0.15  # share of eligible words replaced in a copy (at least one)
    top_k: int = 10  # draw the replacement among this many of the model's best candidates


class Contextual(Augmenter):
    method = "contextual"

    def __init__(self, fill: FillMask, n: int = 1, seed: int = 0, lang: str = "auto", options: dict | None = None,
                 batch_size: int = 16):
        super().__init__(n, seed, lang)
        self.fill = fill
        self.opts = ContextualOptions.parse(options, self.method)
        self.batch_size = batch_size

    def _eligible(self, view: View) -> list[int]:
        if view.lang == "zh":
            _split_chars(view)
            return [i for i in view.words() if CJK_RE.match(view.units[i].text) and len(view.units[i].text) == 1
                    and view.units[i].text not in stopwords("zh")]
        return [i for i in view.words() if view.units[i].text.isalpha() and view.units[i].text.lower() not in stopwords("en")]

    def process(self, doc: Document) -> Result:
        return self.process_batch([doc])[0]

    def process_batch(self, docs: list[Document]) -> list[Result]:
        """Masks of every copy of every document in one call to ``fill``, then the copies."""
        plans = []  # per document: (view, [(copy view, [unit indices])])
        requests: list[tuple[str, str]] = []
        for doc in docs:
            view = self.view(doc)
            if view is None:
                plans.append(None)
                continue
            eligible = self._eligible(view)
            rng = self.rng(doc)
            attempts = []
            if eligible:
                text, starts = view.text_and_starts()
                m = max(1, round(self.opts.p * len(eligible)))
                for _ in range(self.n * TRIES):
                    chosen = sorted(rng.sample(eligible, min(m, len(eligible))))
                    for i in chosen:
                        s = starts[i]
                        requests.append((text[:s], text[s + len(view.units[i].text):]))
                    attempts.append(chosen)
            plans.append((view, rng, attempts))
        answers = iter(self.fill(requests) if requests else [])
        out: list[Result] = []
        for doc, plan in zip(docs, plans):
            if plan is None:
                out.append(doc)
                continue
            view, rng, attempts = plan
            copies = []
            for chosen in attempts:
                v = view.clone()
                changed = False
                for i in chosen:
                    word = v.units[i].text
                    cands = [c for c in next(answers) if self._fits(c, word, view.lang)][: self.opts.top_k]
                    if cands:
                        v.replace_word(i, match_case(word, rng.choice(cands)))
                        changed = True
                copies.append(v if changed else None)
            if not attempts:
                self.stats.counters["no_eligible_words"] += 1
            out.append(self.collect(doc, copies))
        return out

    @staticmethod
    def _fits(cand: str, word: str, lang: str) -> bool:
        if cand.lower() == word.lower():
            return False
        if lang == "zh":
            return len(cand) == 1 and bool(CJK_RE.match(cand))
        return cand.isalpha()


def _split_chars(view: View) -> None:
    """Chinese word units become one unit per character (the MLM predicts characters)."""
    units = []
    for u in view.units:
        chars = list(u.text)
        if u.kind != WORD or len(chars) < 2 or (u.toks is not None and u.toks != chars):
            units.append(u)
            continue
        for j, c in enumerate(chars):
            last = j == len(chars) - 1
            units.append(replace(u, text=c, ws=u.ws if last else "", toks=[c] if u.toks is not None else None,
                                 orig=c if u.orig is not None else None))
    view.units = units


class MLMFiller:
    """``FillMask`` over a masked LM with ``hidden_states`` and ``mlm_logits`` (our BERT, or a Hugging
    Face BERT imported by ``lmforge.models.hf.import_hf``) and its lmforge ``Tok``.

    Each request becomes ``[CLS] before [MASK] after [SEP]``, cut to ``max_len`` tokens around the mask;
    candidates are whole-word tokens (no ``##`` continuations, no special tokens), best first.
    """

    def __init__(self, model, tok, max_len: int = 128, candidates: int = 50, batch_size: int = 32):
        from ....errors import InputError

        if not hasattr(model, "mlm_logits"):
            raise InputError(f"{type(model).__name__} has no masked-LM head",
                             "pass a BERT pretrained with MLM (or a Hugging Face BERT with its MLM head)")
        if tok.mask_id is None:
            raise InputError("the tokenizer has no [MASK] token", "use the tokenizer the MLM was trained with")
        self.model, self.tok = model.eval(), tok
        self.max_len = min(max_len, getattr(model.config, "block_size", max_len))
        self.candidates, self.batch_size = candidates, batch_size
        vocab = tok.hf.get_vocab(with_added_tokens=True)
        marked = [t for t in vocab if t.startswith(("Ġ", "▁"))]
        self.marker = ("Ġ" if sum(t.startswith("Ġ") for t in marked) * 2 > len(marked) else "▁") \
            if len(marked) > len(vocab) // 10 else None  # byte-level BPE / SentencePiece: words start with it
        self.special = set(tok.hf.get_added_tokens_decoder())

    def _ids(self, before: str, after: str) -> tuple[list[int], int]:
        tok = self.tok
        a, b = tok.encode(before.rstrip() if self.marker is None else before), tok.encode(after)
        room = self.max_len - 3
        keep_b = min(len(b), max(room // 2, room - len(a)))
        keep_a = min(len(a), room - keep_b)
        a = a[len(a) - keep_a:]
        cls = tok.cls_id if tok.cls_id is not None else tok.bos_id
        sep = tok.sep_id if tok.sep_id is not None else tok.eos_id
        ids = ([cls] if cls is not None else []) + a + [tok.mask_id] + b[:keep_b] + ([sep] if sep is not None else [])
        return ids, (1 if cls is not None else 0) + len(a)

    def _word(self, i: int) -> str | None:
        if i in self.special:
            return None
        t = self.tok.hf.id_to_token(i)
        if t is None or t.startswith("##"):
            return None
        if self.marker is not None:
            if not t.startswith(self.marker):
                return None
            return self.tok.decode([i]).strip() or None
        return t

    def __call__(self, requests: list[tuple[str, str]]) -> list[list[str]]:
        import torch

        out: list[list[str]] = []
        device = next(self.model.parameters()).device
        pad = self.tok.pad_id or 0
        for s in range(0, len(requests), self.batch_size):
            rows = [self._ids(a, b) for a, b in requests[s: s + self.batch_size]]
            width = max(len(ids) for ids, _ in rows)
            x = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, (ids, _) in enumerate(rows):
                x[r, : len(ids)] = torch.tensor(ids)
                mask[r, : len(ids)] = 1
            with torch.no_grad():
                h = self.model.hidden_states(x.to(device), attention_mask=mask.to(device))
                where = torch.tensor([m for _, m in rows], device=device)
                logits = self.model.mlm_logits(h[torch.arange(len(rows), device=device), where])
                top = logits.float().topk(min(self.candidates, logits.size(-1)), dim=-1).indices.tolist()
            for ids in top:
                words = [w for w in (self._word(i) for i in ids) if w]
                out.append(list(dict.fromkeys(words)))
        return out
