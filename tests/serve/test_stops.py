"""Stop strings and incremental detokenization: what is streamed equals truncate_at_stop of the whole,
no chunk ever shows the start of a stop string that later completes, never half a character."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.models.generate import truncate_at_stop
from lmforge.serve.stops import IncrementalDecoder, StopScanner, TextStream

ALPHABET = "ab c\n好"  # few letters, so stop strings and their prefixes occur often


def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=400, deadline=None)
@given(text=st.text(ALPHABET, max_size=40), stop=st.lists(st.text(ALPHABET, min_size=1, max_size=4), max_size=4),
       cuts=st.lists(st.integers(0, 60), max_size=12))
def test_streamed_text_is_truncate_at_stop_of_the_whole(text, stop, cuts):
    scanner = StopScanner(stop)
    reference = truncate_at_stop(text, stop)
    out = ""
    for chunk in _chunks(text, cuts):
        out += scanner.feed(chunk)
        # never ahead of the reference: nothing emitted is later cut off by a stop string
        assert reference.startswith(out), (out, reference)
        if scanner.stopped:
            break
    out += scanner.finish()
    assert out == reference
    assert scanner.stopped == (reference != text)
    assert scanner.feed("more") == "" or not scanner.stopped


def test_overlapping_stops_wait_for_the_earlier_one():
    # "c" completes first, but "abcd" started earlier and may still match: the scanner waits
    s = StopScanner(["abcd", "c"])
    assert s.feed("xab") == "x" and s.feed("c") == "" and not s.stopped
    assert s.feed("d") == "" and s.stopped  # "abcd" won: nothing of it is shown
    s = StopScanner(["abcd", "c"])
    assert s.feed("xabc") == "x" and s.feed("e") == "ab" and s.stopped  # "abcd" failed: cut at "c"
    s = StopScanner(["###"])
    assert s.feed("Fine. #") == "Fine. " and s.feed("#x") == "##x" and not s.stopped
    assert s.finish() == "" and s.text == "Fine. ##x"


@pytest.fixture(scope="module")
def tok():
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    text = ["Hello there, how are you today?", "你好，今天天气很好。我们去公园吧！", "Ünïcödé — “quotes” ✓ 🙂 done"] * 20
    return train_tokenizer(text, TokenizerConfig(kind="byte_bpe", vocab_size=300, family="gpt"))


def test_incremental_decoding_never_emits_half_a_character(tok):
    text = "你好，今天天气很好。Ünïcödé 🙂 ✓ Hello"
    ids = tok.encode(text)
    # a byte-level vocabulary this small splits the 3- and 4-byte characters over several tokens
    assert any("\ufffd" in tok.decode([i]) for i in ids)
    dec = IncrementalDecoder(tok.decode)
    pieces = [dec.add(i) for i in ids] + [dec.finish()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == tok.decode(ids) == text
    # a sequence that ends inside a character drops the incomplete bytes rather than showing U+FFFD
    cut = next(k for k in range(1, len(ids)) if tok.decode(ids[:k]).endswith("\ufffd"))
    dec = IncrementalDecoder(tok.decode)
    out = "".join(dec.add(i) for i in ids[:cut]) + dec.finish()
    assert out == tok.decode(ids[:cut]).rstrip("\ufffd")


@pytest.mark.parametrize("seed", range(6))
def test_token_streams_with_stop_strings_across_token_boundaries(tok, seed):
    rng = random.Random(seed)
    text = "".join(rng.choice(["你好", "天气", "很好。", " Hello", " there", "🙂", "✓", ", "]) for _ in range(30))
    ids = tok.encode(text)
    whole = tok.decode(ids)
    # a stop string taken from the middle of the text, usually spanning token boundaries
    start = rng.randrange(len(whole) // 2, len(whole) - 3)
    stop = [whole[start:start + rng.randint(2, 4)], "never there"]
    reference = truncate_at_stop(whole, stop)
    stream = TextStream(tok.decode, stop)
    out = ""
    for i in ids:
        piece = stream.add(i)
        assert "\ufffd" not in piece and reference.startswith(out + piece)
        out += piece
        if stream.stopped:
            break
    out += stream.finish()
    assert out == reference and stream.stopped and stream.text == out
