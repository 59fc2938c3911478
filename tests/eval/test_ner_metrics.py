import numpy as np
import pytest
from seqeval import scheme as ss
from seqeval.metrics import classification_report
from seqeval.metrics.sequence_labeling import get_entities

from lmforge.errors import InputError
from lmforge.eval.ner_metrics import entity_f1_fn, entity_metrics, spans_from_tags

# A small CoNLL-style example, counted by hand below.
GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O", "B-MISC"], ["O", "O"]]
PRED = [["B-PER", "I-PER", "O", "I-LOC"], ["B-ORG", "I-ORG", "O", "O", "B-MISC"], ["B-PER", "I-LOC"]]


def test_conll_example_by_hand_strict():
    # strict IOB2: I-LOC after O is no entity; B-PER I-LOC is PER(0,1) only.
    # pred PER(0,2) ok, ORG(0,2) wrong boundary, MISC ok, PER(0,1) spurious -> tp 2, pred 4, gold 4
    m = entity_metrics(GOLD, PRED, scheme="IOB2", mode="strict")
    assert (m["precision"], m["recall"], m["entity_f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert m["per_type"]["PER"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_type"]["MISC"]["f1"] == 1.0 and m["per_type"]["ORG"]["f1"] == 0.0
    assert m["n_sentences"] == 3 and m["n_true"] == 4 and m["n_pred"] == 4


def test_conll_example_by_hand_conlleval():
    # conlleval is lenient: I-LOC after O is LOC(3,4) (correct), and B-PER I-LOC gives PER(0,1) + LOC(1,2)
    # -> tp 3, pred 6, gold 4: P = 1/2, R = 3/4, F = 0.6
    m = entity_metrics(GOLD, PRED, scheme="IOB2", mode="conlleval")
    assert (m["precision"], m["recall"], m["entity_f1"]) == pytest.approx((0.5, 0.75, 0.6))
    assert m["per_type"]["LOC"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})


def test_bioes_modes_differ():
    gold = [["B-PER", "E-PER", "S-LOC"]]
    pred = [["B-PER", "I-PER", "S-LOC"]]  # PER never closed with E-: ill-formed in BIOES
    strict = entity_metrics(gold, pred, scheme="BIOES", mode="strict")
    assert (strict["precision"], strict["recall"]) == pytest.approx((1.0, 0.5))
    lenient = entity_metrics(gold, pred, scheme="BIOES", mode="conlleval")
    assert lenient["entity_f1"] == pytest.approx(1.0)


def _seqeval_report(gold, pred, **kw):
    rep = classification_report(gold, pred, output_dict=True, zero_division=0, **kw)
    return rep


@pytest.mark.parametrize("scheme,mode", [("IOB2", "strict"), ("IOB2", "conlleval"), ("BIOES", "strict"),
                                         ("IOB1", "strict"), ("BIOES", "conlleval")])
def test_parity_with_seqeval_report(scheme, mode):
    rng = np.random.default_rng(7)
    prefixes = {"IOB2": "BI", "IOB1": "BI", "BIOES": "BIES"}[scheme]
    tags = ["O"] * 4 + [f"{p}-{t}" for p in prefixes for t in ("PER", "LOC", "ORG")]
    gold = [[tags[k] for k in rng.integers(0, len(tags), rng.integers(1, 12))] for _ in range(150)]
    pred = [[t if rng.random() < 0.7 else tags[rng.integers(len(tags))] for t in s] for s in gold]
    kw = {"mode": "strict", "scheme": {"IOB2": ss.IOB2, "IOB1": ss.IOB1, "BIOES": ss.IOBES}[scheme]} \
        if mode == "strict" else {}
    rep = _seqeval_report(gold, pred, **kw)
    m = entity_metrics(gold, pred, scheme=scheme, mode=mode)
    assert m["entity_f1"] == pytest.approx(rep["micro avg"]["f1-score"])
    assert m["precision"] == pytest.approx(rep["micro avg"]["precision"])
    assert m["recall"] == pytest.approx(rep["micro avg"]["recall"])
    for t, v in m["per_type"].items():
        assert v["f1"] == pytest.approx(rep[t]["f1-score"]) and v["support"] == rep[t]["support"]
    # our per-sentence recount (used for bootstrap) gives seqeval's micro F1 on the whole set
    assert entity_f1_fn(gold, pred, scheme, mode)(np.arange(len(gold))) == pytest.approx(m["entity_f1"])


def _random_tags(rng, prefixes: str, n: int) -> list[str]:
    vocab = ["O"] + [f"{p}-{t}" for p in prefixes for t in ("A", "B")]
    return [vocab[k] for k in rng.integers(0, len(vocab), n)]


@pytest.mark.parametrize("scheme,seqeval_cls,prefixes", [("IOB2", ss.IOB2, "BI"), ("IOB1", ss.IOB1, "BI"),
                                                         ("BIOES", ss.IOBES, "BIES")])
def test_spans_agree_with_seqeval_strict(scheme, seqeval_cls, prefixes):
    rng = np.random.default_rng(0)
    for _ in range(2000):
        tags = _random_tags(rng, prefixes, int(rng.integers(0, 9)))  # includes I- after O, E- without B-, ...
        want = [(e.tag, e.start, e.end) for e in ss.Tokens(tags, seqeval_cls).entities]
        assert spans_from_tags(tags, scheme, "strict") == want, tags


def test_spans_agree_with_seqeval_conlleval():
    rng = np.random.default_rng(1)
    for _ in range(3000):
        tags = _random_tags(rng, "BIES", int(rng.integers(0, 9)))
        want = [(t, s, e + 1) for t, s, e in get_entities(tags)]  # seqeval's end is inclusive
        assert spans_from_tags(tags, "IOB2", "conlleval") == want, tags


def test_spans_examples():
    assert spans_from_tags(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    assert spans_from_tags(["O", "I-PER", "I-PER"], "IOB2", "strict") == []
    assert spans_from_tags(["O", "I-PER", "I-PER"], "IOB2", "conlleval") == [("PER", 1, 3)]
    assert spans_from_tags(["S-X", "B-Y", "E-Y"], "BIOES") == [("X", 0, 1), ("Y", 1, 3)]


def test_bad_input():
    with pytest.raises(InputError, match="sentence 0: 2 gold tags but 1"):
        entity_metrics([["O", "O"]], [["O"]])
    with pytest.raises(InputError, match="2 gold sentences but 1"):
        entity_metrics([["O"], ["O"]], [["O"]])
    with pytest.raises(InputError, match="predicted sentence 0.*'E-PER'.*IOB2"):
        entity_metrics([["B-PER", "O"]], [["B-PER", "E-PER"]], scheme="IOB2", mode="strict")
    with pytest.raises(InputError, match="scheme"):
        entity_metrics([["O"]], [["O"]], scheme="BILUO")
    with pytest.raises(InputError, match="mode"):
        entity_metrics([["O"]], [["O"]], mode="lenient")


def test_no_entities_anywhere():
    m = entity_metrics([["O", "O"]], [["O", "O"]])
    assert m["entity_f1"] == 0.0 and m["per_type"] == {} and m["n_true"] == 0
