"""The CRF against brute force: NLL = log-sum-exp over every path minus the gold path's score,
Viterbi = the best-scoring path, with masks and transition constraints."""

import itertools

import torch

from lmforge.models.crf import CRF, scheme_constraints, viterbi


def _path_score(crf: CRF, em: torch.Tensor, path) -> torch.Tensor:
    s = crf.start[path[0]] + em[0, path[0]] + crf.end[path[-1]]
    for t in range(1, len(path)):
        s = s + crf.transitions[path[t - 1], path[t]] + em[t, path[t]]
    return s


def _crf(C: int, seed: int = 0) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(C)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def test_nll_equals_brute_force_with_padding():
    C, T = 3, 4
    crf = _crf(C)
    em = torch.randn(3, T, C)
    lengths = [4, 2, 1]
    mask = torch.tensor([[t < n for t in range(T)] for n in lengths])
    tags = torch.randint(0, C, (3, T))
    nll = crf.nll(em, tags, mask)
    for b, n in enumerate(lengths):
        scores = torch.stack([_path_score(crf, em[b, :n], p) for p in itertools.product(range(C), repeat=n)])
        gold = _path_score(crf, em[b, :n], tags[b, :n].tolist())
        assert torch.allclose(nll[b], torch.logsumexp(scores, 0) - gold, atol=1e-5)
    assert (nll > 0).all()
    # an empty row costs nothing; gradients reach every parameter
    empty = crf.nll(em[:1], tags[:1], torch.zeros(1, T, dtype=torch.bool))
    assert empty.item() == 0.0
    nll.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in crf.parameters())


def test_viterbi_equals_brute_force_argmax():
    C, T = 4, 5
    crf = _crf(C, seed=1)
    em = torch.randn(4, T, C)
    lengths = [5, 3, 1, 0]
    mask = torch.tensor([[t < n for t in range(T)] for n in lengths])
    paths = crf.decode(em, mask)
    for b, n in enumerate(lengths):
        if n == 0:
            assert paths[b] == []
            continue
        best = max(itertools.product(range(C), repeat=n), key=lambda p: float(_path_score(crf, em[b, :n], p).detach()))
        assert paths[b] == list(best)


def test_constraints_forbid_invalid_bio_paths():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    start, trans, end = scheme_constraints(labels, "IOB2")
    assert not start[2] and start[1] and trans[1, 2] and trans[2, 2] and not trans[0, 2] and not trans[3, 2]
    # emissions that want "I-PER I-PER O": the constrained best valid path starts the entity with B-PER
    em = torch.full((1, 3, 5), -5.0)
    em[0, 0, 2], em[0, 0, 1] = 3.0, 2.0
    em[0, 1, 2] = 3.0
    em[0, 2, 0] = 3.0
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert viterbi(em, mask) == [[2, 2, 0]]
    assert viterbi(em, mask, allowed=(start, trans, end)) == [[1, 2, 0]]
    # brute force over valid paths agrees on random scores
    em = torch.randn(1, 4, 5)
    valid = [p for p in itertools.product(range(5), repeat=4)
             if start[p[0]] and end[p[-1]] and all(trans[a, b] for a, b in zip(p, p[1:]))]
    best = max(valid, key=lambda p: sum(float(em[0, t, j]) for t, j in enumerate(p)))
    assert viterbi(em, torch.ones(1, 4, dtype=torch.bool), allowed=(start, trans, end)) == [list(best)]


def test_bioes_constraints():
    labels = ["O", "B-X", "I-X", "E-X", "S-X"]
    start, trans, end = scheme_constraints(labels, "BIOES")
    assert start.tolist() == [True, True, False, False, True]
    assert end.tolist() == [True, False, False, True, True]
    assert trans[1, 2] and trans[1, 3] and trans[2, 3] and not trans[1, 0] and not trans[3, 2] and trans[3, 1]
    assert not trans[0, 3] and trans[4, 4]
