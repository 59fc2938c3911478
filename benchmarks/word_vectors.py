"""word2vec against gensim on the same corpus, settings and threads: quality and training words/s.

Corpus: the 13 Gutenberg books (two are latin-1, decoded here) + the TinyStories sample (its cut-off
last story dropped), tokenised once with lmforge's rules (lowercase, punctuation dropped, a
paragraph is a sentence); both libraries train on exactly these sentences. Settings are gensim's
defaults made explicit (dim 100, window 5, min_count 5, sample 1e-3, negative 5, 5 epochs) with the
same alpha on both sides and 2 threads each.

words/s = corpus tokens x epochs / wall time of training (vocabulary building excluded on both
sides and reported apart). Runs alternate ours / gensim so machine noise hits both alike; the median
round counts. Both models are scored by the same evaluator (ours, which matches gensim's
``evaluate_word_analogies`` / ``evaluate_word_pairs``; gensim's own numbers for its model are kept too).

    python benchmarks/word_vectors.py                 # writes benchmarks/results/word_vectors.{json,md}
    python benchmarks/word_vectors.py --quick         # TinyStories only, 1 epoch, 1 round
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from lmforge.models.vectors import VectorsConfig, WordVectors, build_corpus, tokenize, train
from lmforge.models.vectors.evaluate import datasets_dir, evaluate, standard_suite

RESULTS = Path(__file__).parent / "results"


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def corpus_sentences(root: Path, quick: bool, cfg: VectorsConfig) -> tuple[list[list[str]], list[str]]:
    files = [] if quick else sorted((root / "pretrain" / "gutenberg").glob("*.txt"))
    files.append(root / "pretrain" / "tinystories" / "tinystories_sample_2MiB.txt")
    sents: list[list[str]] = []
    for f in files:
        text = read_text(f).replace("\r\n", "\n")
        paras = [p for p in text.split("\n\n") if p.strip()]
        if "tinystories" in f.name:
            paras = paras[:-1]  # the sample ends mid-story
        for p in paras:
            toks = tokenize(p, cfg)
            if toks:
                sents.append(toks)
    return sents, [str(f.relative_to(root)) for f in files]


def run_ours(corpus, cfg: VectorsConfig) -> tuple[WordVectors, dict]:
    cpu = time.process_time()
    wv, stats = train(corpus, cfg)
    return wv, {"seconds": stats.seconds, "cpu_seconds": time.process_time() - cpu, "effective_words": stats.effective_words}


def run_gensim(sents, cfg: VectorsConfig) -> tuple[WordVectors, dict, object]:
    from gensim.models import Word2Vec

    m = Word2Vec(vector_size=cfg.dim, window=cfg.window, min_count=cfg.min_count, sample=cfg.sample,
                 negative=cfg.negative, hs=0, sg=int(cfg.model == "skipgram"), cbow_mean=int(cfg.cbow_mean),
                 alpha=cfg.start_alpha, min_alpha=cfg.min_alpha, workers=cfg.threads, epochs=cfg.n_epochs,
                 seed=cfg.seed)
    t = time.perf_counter()
    m.build_vocab(sents)
    vocab_s = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    effective, _raw = m.train(sents, total_examples=len(sents), epochs=cfg.n_epochs)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    wv = WordVectors(list(m.wv.index_to_key), m.wv.vectors)
    return wv, {"seconds": seconds, "cpu_seconds": cpu, "effective_words": int(effective),
                "vocab_seconds": vocab_s}, m


def scores(wv: WordVectors, analogies, similarity) -> dict:
    res = evaluate(wv, analogies, similarity)
    out = {}
    for name, r in res.items():
        if r["kind"] == "analogy":
            out[name] = {"accuracy": round(100 * r["accuracy"], 2), "covered": r["total"], "oov": r["oov_questions"]}
        else:
            out[name] = {"spearman": round(100 * r["spearman"], 2), "pairs": r["pairs"], "oov": r["oov_pairs"]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="skipgram,cbow")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    logging.getLogger("gensim").setLevel(logging.WARNING)
    import gensim

    root = datasets_dir()
    analogies, similarity = standard_suite("en", root)
    load_before = os.getloadavg()
    base = VectorsConfig(threads=args.threads, epochs=1 if args.quick else 5)
    t = time.perf_counter()
    sents, files = corpus_sentences(root, args.quick, base)
    tokenize_s = time.perf_counter() - t
    rounds = 1 if args.quick else args.rounds
    results = {}
    for model in args.models.split(","):
        cfg = base.model_copy(update={"model": model, "alpha": 0.025 if model == "skipgram" else 0.05})
        t = time.perf_counter()
        corpus = build_corpus(sents, cfg)
        vocab_s = time.perf_counter() - t
        ours_runs, theirs_runs = [], []
        for r in range(rounds):
            wv, o = run_ours(corpus, cfg)
            ours_runs.append(o)
            gwv, g, gm = run_gensim(sents, cfg)
            theirs_runs.append(g)
            print(f"{model} round {r + 1}: ours {o['seconds']:.1f}s ({o['cpu_seconds']:.1f} CPU s), "
                  f"gensim {g['seconds']:.1f}s ({g['cpu_seconds']:.1f} CPU s) load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        words = corpus.raw_words * cfg.n_epochs
        ours_wps = statistics.median(words / o["seconds"] for o in ours_runs)
        gensim_wps = statistics.median(words / g["seconds"] for g in theirs_runs)
        ours_scores, gensim_scores = scores(wv, analogies, similarity), scores(gwv, analogies, similarity)
        g_acc, _ = gm.wv.evaluate_word_analogies(str(analogies[0]))
        g_ws = gm.wv.evaluate_word_pairs(str(similarity[0]))[1].statistic
        results[model] = {
            "corpus_words": corpus.raw_words, "sentences": len(sents), "vocab": len(corpus.words),
            "gensim_vocab": len(gwv), "epochs": cfg.n_epochs, "alpha": cfg.start_alpha,
            "ours_words_per_s": round(ours_wps), "gensim_words_per_s": round(gensim_wps),
            "speedup": round(ours_wps / gensim_wps, 3),
            "ours_words_per_cpu_s": round(statistics.median(words / o["cpu_seconds"] for o in ours_runs)),
            "gensim_words_per_cpu_s": round(statistics.median(words / g["cpu_seconds"] for g in theirs_runs)),
            "ours_rounds_s": [round(o["seconds"], 2) for o in ours_runs],
            "gensim_rounds_s": [round(g["seconds"], 2) for g in theirs_runs],
            "ours_vocab_s": round(vocab_s, 2), "gensim_vocab_s": round(theirs_runs[-1]["vocab_seconds"], 2),
            "ours_effective_words": ours_runs[-1]["effective_words"],
            "gensim_effective_words": theirs_runs[-1]["effective_words"],
            "ours": ours_scores, "gensim": gensim_scores,
            "gensim_own_eval": {"analogy_accuracy": round(100 * g_acc, 2), "wordsim_spearman": round(100 * float(g_ws), 2)},
        }
    load_after = os.getloadavg()
    env = {"gensim": gensim.__version__, "numpy": np.__version__, "python": platform.python_version(),
           "cpus": os.cpu_count(), "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in load_after], "tokenize_seconds": round(tokenize_s, 1)}
    command = "python benchmarks/word_vectors.py " + " ".join(sys.argv[1:])
    out = {"command": command, "env": env, "note": args.note, "files": files, "results": results}
    if args.quick:
        print(json.dumps(out, indent=2))
        return 0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "word_vectors.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "word_vectors.md").write_text(render(out), encoding="utf-8")
    print(render(out))
    return 0


def render(out: dict) -> str:
    lines = ["# Word vectors: lmforge vs gensim (word2vec, negative sampling)", "",
             f"Command: `{out['command']}`", "", f"Environment: {json.dumps(out['env'])}", ""]
    if out["note"]:
        lines += [f"Note: {out['note']}", ""]
    any_r = next(iter(out["results"].values()))
    lines += [f"Corpus: {len(out['files'])} files (Gutenberg + TinyStories), {any_r['corpus_words']:,} tokens, "
              f"{any_r['sentences']:,} paragraphs; vocabulary {any_r['vocab']:,} (min_count 5; gensim {any_r['gensim_vocab']:,}). "
              "Settings on both sides: dim 100, window 5, negative 5, sample 1e-3, "
              f"{any_r['epochs']} epochs, {out['env']['threads']} threads.", "",
             "| model | lmforge words/s | gensim words/s | speedup | words/CPU-s lmforge | gensim | analogy acc. lmforge | gensim | WordSim-353 rho lmforge | gensim | SimLex-999 rho lmforge | gensim |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, r in out["results"].items():
        o, g = r["ours"], r["gensim"]
        lines.append(f"| {model} (alpha {r['alpha']}) | {r['ours_words_per_s']:,} | {r['gensim_words_per_s']:,} | {r['speedup']:.2f}x "
                     f"| {r['ours_words_per_cpu_s']:,} | {r['gensim_words_per_cpu_s']:,} "
                     f"| {o['questions-words.txt']['accuracy']:.2f} | {g['questions-words.txt']['accuracy']:.2f} "
                     f"| {o['wordsim353.tsv']['spearman']:.2f} | {g['wordsim353.tsv']['spearman']:.2f} "
                     f"| {o['simlex999.txt']['spearman']:.2f} | {g['simlex999.txt']['spearman']:.2f} |")
    lines += ["", "Analogy accuracy (%) is over the Google questions whose four words are in the vocabulary "
              f"({any_r['ours']['questions-words.txt']['covered']:,} covered for lmforge, "
              f"{any_r['gensim']['questions-words.txt']['covered']:,} for gensim, of 19,544); Spearman x 100 over covered pairs. "
              "Both models scored by the same evaluator; gensim's own evaluator on its model: "
              + ", ".join(f"{m}: {r['gensim_own_eval']}" for m, r in out["results"].items()) + ".",
              "words/s = corpus tokens x epochs / training wall time (median round); words/CPU-s divides by the "
              "CPU time the process used while training (all threads, gensim's job producer included), which "
              "load from other jobs on a shared machine distorts much less. Training rounds (seconds): " + "; ".join(
                  f"{m}: lmforge {r['ours_rounds_s']}, gensim {r['gensim_rounds_s']}" for m, r in out["results"].items()) + ".", ""]
    if out.get("seed_check"):
        lines += [f"Seed noise: {out['seed_check']}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
