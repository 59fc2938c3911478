"""A linear-chain CRF over per-word emission scores (NER), plus the tag-transition constraints of
BIO-style schemes.

A tag sequence y_1..y_n of a sentence scores
    start[y_1] + sum_t emissions[t, y_t] + sum_t transitions[y_{t-1}, y_t] + end[y_n];
training minimises log Z - score(gold) (Z: the sum over all tag sequences, the forward algorithm in
log space), decoding is Viterbi. Masks are left-aligned: row b has mask[b, :n_b] True, the rest
False; a row with no positions has NLL 0 and decodes to [].
"""

from __future__ import annotations

import torch
import torch.nn as nn

NEG = -1e4  # score of a forbidden transition: far below any real path, but no inf - inf = nan


class CRF(nn.Module):
    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def _gold_score(self, em: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) score of the given tag sequences."""
        m = mask.to(em.dtype)
        tags = tags.masked_fill(~mask, 0)
        e = em.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        score = self.start[tags[:, 0]] + e[:, 0]
        if em.shape[1] > 1:
            trans = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
            score = score + ((trans + e[:, 1:]) * m[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).clamp_min(0).unsqueeze(1)).squeeze(1)
        return score + self.end[last]

    def _log_partition(self, em: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) log Z by the forward algorithm."""
        alpha = self.start + em[:, 0]  # (B, C): log-sum of paths ending in each tag
        for t in range(1, em.shape[1]):
            # (B, C_from, 1) + (C_from, C_to) + (B, 1, C_to) -> sum over from
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.transitions + em[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t, None], nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) negative log-likelihood of ``tags`` (B, T) under ``emissions`` (B, T, C)."""
        em = emissions.float()
        mask = mask.bool()
        out = self._log_partition(em, mask) - self._gold_score(em, tags, mask)
        return out * mask[:, 0].to(out.dtype)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor,
               allowed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> list[list[int]]:
        """Best tag sequence per row; ``allowed`` = (start (C,), transitions (C, C), end (C,)) bool
        masks forbids what is False (e.g. O -> I-PER in IOB2)."""
        return viterbi(emissions, mask, self.transitions, self.start, self.end, allowed)


@torch.no_grad()
def viterbi(emissions: torch.Tensor, mask: torch.Tensor, transitions: torch.Tensor | None = None,
            start: torch.Tensor | None = None, end: torch.Tensor | None = None,
            allowed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> list[list[int]]:
    """Viterbi decoding; without transition scores this is the best *valid* sequence of per-token
    scores (softmax models with ``allowed``)."""
    em = emissions.float()
    B, T, C = em.shape
    mask = mask.bool()
    dev = em.device
    trans = torch.zeros(C, C, device=dev) if transitions is None else transitions.float().clone()
    st = torch.zeros(C, device=dev) if start is None else start.float().clone()
    en = torch.zeros(C, device=dev) if end is None else end.float().clone()
    if allowed is not None:
        a_start, a_trans, a_end = (x.to(dev) for x in allowed)
        st = st.masked_fill(~a_start, NEG)
        trans = trans.masked_fill(~a_trans, NEG)
        en = en.masked_fill(~a_end, NEG)
    score = st + em[:, 0]  # (B, C)
    back = []
    for t in range(1, T):
        total = score.unsqueeze(2) + trans  # (B, C_from, C_to)
        best, idx = total.max(dim=1)
        nxt = best + em[:, t]
        score = torch.where(mask[:, t, None], nxt, score)
        back.append(idx)
    score = score + en
    lengths = mask.sum(1).tolist()
    last = score.argmax(1).tolist()
    out = []
    for b in range(B):
        n = lengths[b]
        if n == 0:
            out.append([])
            continue
        path = [last[b]]
        for t in range(n - 1, 0, -1):  # back[t-1] maps the tag at t to the best tag at t-1
            path.append(int(back[t - 1][b, path[-1]]))
        out.append(path[::-1])
    return out


def scheme_constraints(labels: list[str], scheme: str = "IOB2") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(start, transitions, end) bool masks of what a well-formed tag sequence may do.

    IOB2: I-X only after B-X or I-X. BIOES: I-X/E-X only after B-X/I-X; after B-X/I-X only I-X/E-X;
    a sequence starts outside an entity and ends after E-/S-/O.
    """
    C = len(labels)
    parts = [(lab[0], lab[2:]) if lab != "O" else ("O", "") for lab in labels]
    start = torch.ones(C, dtype=torch.bool)
    end = torch.ones(C, dtype=torch.bool)
    trans = torch.ones(C, C, dtype=torch.bool)
    bioes = scheme.upper() in ("BIOES", "IOBES")
    for j, (pj, tj) in enumerate(parts):
        if pj in ("I", "E"):
            start[j] = False
        if bioes and pj in ("B", "I"):
            end[j] = False
        for i, (pi, ti) in enumerate(parts):
            inside_next = pj in ("I", "E") if bioes else pj == "I"
            if inside_next:  # continuing: the previous tag must open or continue the same type
                trans[i, j] = pi in ("B", "I") and ti == tj
            elif bioes and pi in ("B", "I"):  # an open entity must continue
                trans[i, j] = False
    return start, trans, end
