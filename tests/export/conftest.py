"""Tiny real models with a real tokenizer, saved as lmforge model directories."""

import pytest
import torch

WORDS = "the cat sat on a mat paris is capital of france and rome italy good film loved every minute it truly wonderful story".split()


@pytest.fixture(scope="session")
def tokdir(tmp_path_factory):
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer

    d = tmp_path_factory.mktemp("tok")
    (d / "corpus.txt").write_text((" ".join(WORDS) + "\n") * 20)
    tok = train_tokenizer([str(d / "corpus.txt")], TokenizerConfig(kind="wordpiece", vocab_size=120, family="bert"))
    tok.save(d / "files")
    return d / "files"


def perturb(model, seed=1, scale=0.05):
    """Non-trivial weights everywhere (norm gains, biases), so a wrong graph cannot hide."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def save(model, path, tokdir):
    from lmforge.models.io import save_model

    return save_model(model, path, extra_files=sorted(tokdir.iterdir()))


@pytest.fixture
def make(tokdir, tmp_path):
    """make(kind) -> model directory: bert, bert_classifier, bert_tagger, bert_crf, bert_qa, gpt, gpt_rope,
    gpt_classifier, seq2seq, seq2seq_rope."""
    from lmforge.models.bert import BERT, BertConfig
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.models.heads import SequenceClassifier, SpanExtractor, TokenClassifier
    from lmforge.models.seq2seq import Seq2Seq, Seq2SeqConfig
    from lmforge.tokenizer.tok import Tok

    V = Tok.load(tokdir).vocab_size

    def build(kind: str):
        torch.manual_seed(0)
        bert = lambda: BERT(BertConfig(vocab_size=V, block_size=32, n_layer=2, n_head=2, d_model=32, dropout=0.0))  # noqa: E731
        models = {
            "bert": bert,
            "bert_classifier": lambda: SequenceClassifier(bert(), 3, "cls", 0.0, ["neg", "neu", "pos"]),
            "bert_mean_classifier": lambda: SequenceClassifier(bert(), 2, "mean", 0.0, ["a", "b"]),
            "bert_tagger": lambda: TokenClassifier(bert(), ["O", "B-PER", "I-PER"], 0.0),
            "bert_crf": lambda: TokenClassifier(bert(), ["O", "B-PER", "I-PER"], 0.0, crf=True),
            "bert_qa": lambda: SpanExtractor(bert()),
            "gpt": lambda: GPT(GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=2, d_model=32, dropout=0.0)),
            "gpt_rope": lambda: GPT(GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=4, n_kv_head=2,
                                              d_model=32, dropout=0.0, positions="rope", norm="rmsnorm",
                                              mlp="swiglu")),
            "gpt_classifier": lambda: SequenceClassifier(
                GPT(GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=2, d_model=32, dropout=0.0)), 2, "mean",
                0.0, ["a", "b"]),
            "seq2seq": lambda: Seq2Seq(Seq2SeqConfig(vocab_size=V, block_size=32, n_encoder_layer=2, n_decoder_layer=2,
                                                     n_head=2, d_model=32, dropout=0.0)),
            "seq2seq_rope": lambda: Seq2Seq(Seq2SeqConfig(vocab_size=V, block_size=32, n_encoder_layer=1,
                                                          n_decoder_layer=1, n_head=2, d_model=32, dropout=0.0,
                                                          positions="rope", norm="rmsnorm", mlp="swiglu")),
        }
        return save(perturb(models[kind]()), tmp_path / kind, tokdir)

    return build
