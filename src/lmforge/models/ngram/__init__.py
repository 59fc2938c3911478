"""N-gram language models: modified Kneser-Ney, Katz and add-k, ARPA in and out.

    from lmforge.models.ngram import NgramConfig, train, NgramLM, evaluate_file
    lm = train(["train.txt"], NgramConfig(order=5), output="lm5")   # lm5/model.arpa loads in kenlm
    lm.score("a sentence")            # log10 p with <s> and </s>, as kenlm.Model.score
    evaluate_file("lm5", "test.txt")  # {"loss", "perplexity", "bits_per_byte", "tokens", "oov_rate", ...}
"""

from .arpa import read_arpa, write_arpa
from .config import NgramConfig, make_tokenizer
from .model import NgramLM, config_from, evaluate_file, train

__all__ = ["NgramConfig", "NgramLM", "train", "evaluate_file", "config_from", "read_arpa", "write_arpa",
           "make_tokenizer"]
