"""Streamed text that never leaks a stop string or half a character.

Two small pieces, one per concern. ``IncrementalDecoder`` turns token ids into text deltas the way
vLLM does: it decodes a short window (one token of left context, so SentencePiece / WordPiece spacing
is right) and holds the delta back while it ends in U+FFFD, i.e. while a multi-byte UTF-8 character is
still missing bytes. ``StopScanner`` takes text deltas and emits only text that can no longer become
part of a stop string: it holds back the longest suffix that is a prefix of any stop string, and on a
match emits the text before it. It finishes only when no partial match starts before the complete
one, so the emitted text is exactly ``truncate_at_stop`` of the whole text (``models.generate``), the
reference the tests compare against. ``TextStream`` chains the two for one generated sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..models.generate import truncate_at_stop

REPLACEMENT = "\ufffd"


class StopScanner:
    """Text deltas in, safe text out; ``stopped`` once a stop string has matched for good."""

    def __init__(self, stop: Sequence[str] = ()):
        self.stop = [s for s in dict.fromkeys(stop) if s]
        self.longest = max((len(s) for s in self.stop), default=0)
        self.text = ""  # everything received
        self.sent = 0   # characters of ``text`` emitted so far
        self.stopped = False

    def feed(self, chunk: str) -> str:
        if self.stopped or not chunk:
            return ""
        self.text += chunk
        if not self.stop:
            return self._upto(len(self.text))
        # a match starts at or after ``sent``: earlier text was emitted only once no stop could cover it
        cut = min((i for s in self.stop if (i := self.text.find(s, self.sent)) >= 0), default=-1)
        pending = self._pending(cut if cut >= 0 else len(self.text))
        if cut >= 0 and pending is None:
            self.stopped = True
            return self._upto(cut)
        return self._upto(pending if pending is not None else len(self.text))

    def finish(self) -> str:
        """The rest at the end of generation (length, EOS): no more text can complete a stop string."""
        if self.stopped:
            return ""
        final = truncate_at_stop(self.text, self.stop)
        self.stopped = len(final) < len(self.text)
        return self._upto(len(final))

    def _pending(self, before: int) -> int | None:
        """The first position < ``before`` whose tail is a proper prefix of a stop string (may still match)."""
        n = len(self.text)
        for q in range(max(self.sent, n - self.longest + 1), min(before, n)):
            tail = self.text[q:]
            if any(len(tail) < len(s) and s.startswith(tail) for s in self.stop):
                return q
        return None

    def _upto(self, end: int) -> str:
        out = self.text[self.sent:end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return out


class IncrementalDecoder:
    """Token ids in, new text out (vLLM's prefix/read offsets); never half a UTF-8 character."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self.decode = decode
        self.ids: list[int] = []
        self.prefix = 0  # window start: one token of left context for the tokenizer's spacing rules
        self.read = 0    # tokens whose text has been emitted

    def add(self, token: int) -> str:
        self.ids.append(int(token))
        return self._delta(final=False)

    def finish(self) -> str:
        return self._delta(final=True)

    def _delta(self, final: bool) -> str:
        if self.read >= len(self.ids):
            return ""
        before = self.decode(self.ids[self.prefix:self.read]) if self.read > self.prefix else ""
        text = self.decode(self.ids[self.prefix:])
        if final:
            text = text.rstrip(REPLACEMENT)  # bytes that never completed a character are dropped
        elif text.endswith(REPLACEMENT):
            return ""  # wait for the rest of the character
        if len(text) <= len(before) or not text.startswith(before):
            return ""  # nothing new yet (or the tokenizer rewrote the window: wait for more context)
        self.prefix, self.read = self.read, len(self.ids)
        return text[len(before):]


class TextStream:
    """One generated sequence: ``add(token)`` returns the text that is now safe to send."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()):
        self.decoder = IncrementalDecoder(decode)
        self.scanner = StopScanner(stop)

    @property
    def stopped(self) -> bool:
        return self.scanner.stopped

    @property
    def text(self) -> str:
        """Everything emitted so far."""
        return self.scanner.text[: self.scanner.sent]

    def add(self, token: int) -> str:
        if self.scanner.stopped:
            return ""
        return self.scanner.feed(self.decoder.add(token))

    def finish(self) -> str:
        if self.scanner.stopped:
            return ""
        return self.scanner.feed(self.decoder.finish()) + self.scanner.finish()
