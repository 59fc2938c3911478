"""Tokenizers (byte-level BPE, BPE, WordPiece, Unigram, char) and token shards.

    tok = train_tokenizer(texts, TokenizerConfig(kind="byte_bpe", vocab_size=8192))
    tok.save("out/"); tok = Tok.load("out/")
    encode_corpus([Path("train.jsonl")], tok, Path("out/train.bin"))
    shard = read_shard("out/train.bin")   # shard.tokens is a numpy.memmap
    enc = tok.encode_full(question, context, max_length=384, stride=128, return_overflow=True)
    ids, loss_mask = add_chat_tokens(tok).render_chat([{"role": "user", "content": "Hi"}, ...])
"""

from .chat import ChatRender, ChatTemplate, add_chat_tokens, from_hf_chat_template
from .config import TokenizerConfig
from .corpus import encode_corpus, expand_inputs, iter_corpus, iter_documents
from .shards import Shard, ShardWriter, read_shard, write_shard
from .specials import FAMILY_SPECIALS
from .stats import tokenizer_stats
from .tok import Encoding, Tok
from .train import train_tokenizer

__all__ = [
    "FAMILY_SPECIALS", "Shard", "ShardWriter", "Tok", "TokenizerConfig", "encode_corpus", "expand_inputs",
    "iter_corpus", "iter_documents", "read_shard", "tokenizer_stats", "train_tokenizer", "write_shard",
    "ChatRender", "ChatTemplate", "Encoding", "add_chat_tokens", "from_hf_chat_template",
]
