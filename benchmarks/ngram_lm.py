"""n-gram LMs side by side: lmforge vs KenLM (lmplz + the kenlm module) vs NLTK's ``lm``.

    python benchmarks/ngram_lm.py [--lmplz /path/to/lmplz] [--repeats 3] [--out-dir benchmarks/results]

WikiText-2 valid (tokenized, one paragraph a line): the first 90% of its non-empty lines train a
modified-Kneser-Ney 5-gram, the last 10% are scored. KenLM refuses ``<unk>`` in a training corpus
and its reader treats ``<unk>``/``<UNK>`` as the unknown word, so for every system here the
dataset's literal ``<unk>`` is renamed ``@unk@`` (an ordinary word).

* correctness: lmforge's ARPA loaded by the ``kenlm`` module gives the same per-token log10 p as
  lmforge's own query (max |difference|); perplexity of lmforge vs ``lmplz -o 5`` on the same
  text (lmplz is optional: pass --lmplz or put it on PATH; it is not part of the pip package);
  ARPA write -> read -> write is byte-identical.
* speed: training (count + estimate, what ``lmforge ngram train`` does before writing files) vs
  ``nltk.lm.KneserNeyInterpolated.fit`` (which only counts: NLTK estimates lazily at query time);
  queries as tokens scored per second (tokenizing and vocabulary look-up included) vs the kenlm
  module's per-sentence ``Model.score`` from Python.
* n-gram vs Transformer: a character 6-gram on tiny Shakespeare (first 90% / last 10%, as the
  pretrain benchmark splits it) in bits per character, next to benchmarks/results/pretrain_shakespeare.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LMFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))


def _best(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, min(times), times


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def wikitext_split(tmp: Path) -> tuple[Path, Path]:
    src = DATA / "pretrain" / "wikitext2" / "valid.txt"
    if not src.exists():
        sys.exit(f"dataset missing: {src} (set LMFORGE_DATASETS)")
    lines = [ln.strip().replace("<unk>", "@unk@") for ln in src.read_text(encoding="utf-8").split("\n") if ln.strip()]
    cut = int(len(lines) * 0.9)
    (tmp / "train.txt").write_text("\n".join(lines[:cut]) + "\n", encoding="utf-8")
    (tmp / "test.txt").write_text("\n".join(lines[cut:]) + "\n", encoding="utf-8")
    return tmp / "train.txt", tmp / "test.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lmplz", default=os.environ.get("LMPLZ") or shutil.which("lmplz"), help="KenLM's lmplz binary")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--skip-nltk", action="store_true")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()

    from lmforge.models.ngram import NgramConfig, NgramLM, evaluate_file, train

    res: dict = {"machine": f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}",
                 "load_before": _load(), "order": args.order}
    versions = {"numpy": np.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_f, test_f = wikitext_split(tmp)
        test_lines = [ln for ln in test_f.read_text(encoding="utf-8").split("\n") if ln]
        train_tokens = sum(len(ln.split()) for ln in train_f.read_text(encoding="utf-8").split("\n"))
        res["data"] = {"train_lines": len(train_f.read_text().split("\n")) - 1, "train_tokens": train_tokens,
                       "test_lines": len(test_lines), "test_tokens_with_eos": sum(len(ln.split()) + 1 for ln in test_lines)}

        # ---- lmforge: train, export, score
        cfg = NgramConfig(order=args.order)
        lm, t_train, all_train = _best(lambda: train([train_f], cfg), args.repeats)
        t0 = time.perf_counter()
        lm.save(tmp / "lm")
        t_save = time.perf_counter() - t0
        ev = evaluate_file(tmp / "lm", test_f)
        res["lmforge"] = {"train_s": round(t_train, 3), "train_all_s": [round(x, 3) for x in all_train],
                          "save_with_arpa_s": round(t_save, 3), "ngrams": [len(x) for x in lm.logp],
                          "discounts": lm.info["discounts"], "perplexity": ev["perplexity"],
                          "bits_per_byte": ev["bits_per_byte"], "oov_rate": ev["oov_rate"]}
        arpa = tmp / "lm" / "model.arpa"
        back = NgramLM.from_arpa(arpa)
        back.to_arpa(tmp / "again.arpa")
        res["arpa_round_trip_identical"] = (tmp / "again.arpa").read_bytes() == arpa.read_bytes()
        res["arpa_mb"] = round(arpa.stat().st_size / 1e6, 2)

        # query speed: lmforge vectorised batch vs kenlm per-sentence score
        n_tok = sum(len(ln.split()) + 1 for ln in test_lines)
        _, t_q, all_q = _best(lambda: lm.score_lines(test_lines), args.repeats)
        res["lmforge"]["query_tokens_per_s"] = round(n_tok / t_q)
        res["lmforge"]["query_all_s"] = [round(x, 4) for x in all_q]

        try:
            import kenlm
        except ImportError:
            kenlm = None
            res["kenlm"] = "kenlm module not installed (pip install kenlm)"
        if kenlm is not None:
            versions["kenlm"] = getattr(kenlm, "__version__", "?")
            km = kenlm.Model(str(arpa))
            diffs = []
            for ln in test_lines:
                ours = [s for s, _, _ in lm.full_scores(ln)]
                theirs = [s for s, _, _ in km.full_scores(ln)]
                diffs.append(np.max(np.abs(np.subtract(ours, theirs))))
            _, t_k, all_k = _best(lambda: sum(km.score(ln) for ln in test_lines), args.repeats)
            res["kenlm_module"] = {"max_abs_log10_diff_vs_lmforge": float(max(diffs)),
                                   "perplexity_of_lmforge_arpa": 10 ** (-sum(km.score(ln) for ln in test_lines) / n_tok),
                                   "query_tokens_per_s": round(n_tok / t_k), "query_all_s": [round(x, 4) for x in all_k]}
            res["query_speedup_vs_kenlm_score"] = round(t_k / t_q, 2)

        if args.lmplz and kenlm is not None:
            def run_lmplz():
                with open(train_f, "rb") as fin, open(tmp / "lmplz.arpa", "wb") as fout:
                    subprocess.run([args.lmplz, "-o", str(args.order), "-S", "20%", "-T", str(tmp)], stdin=fin,
                                   stdout=fout, stderr=subprocess.DEVNULL, check=True)
            _, t_lmplz, all_lmplz = _best(run_lmplz, args.repeats)
            kr = kenlm.Model(str(tmp / "lmplz.arpa"))
            ppl_k = 10 ** (-sum(kr.score(ln) for ln in test_lines) / n_tok)
            ref = NgramLM.from_arpa(tmp / "lmplz.arpa")
            same_ngrams = [len(x) for x in ref.logp] == res["lmforge"]["ngrams"]
            res["lmplz"] = {"train_s": round(t_lmplz, 3), "train_all_s": [round(x, 3) for x in all_lmplz],
                            "perplexity": ppl_k, "same_ngram_counts": same_ngrams}
            res["perplexity_ratio_lmforge_over_lmplz"] = res["lmforge"]["perplexity"] / ppl_k
        else:
            res["lmplz"] = "not run (no lmplz binary: pass --lmplz; build it from github.com/kpu/kenlm)"

        # ---- NLTK
        if not args.skip_nltk:
            import nltk
            from nltk.lm import KneserNeyInterpolated
            from nltk.lm.preprocessing import padded_everygram_pipeline

            versions["nltk"] = nltk.__version__
            sents = [ln.split() for ln in train_f.read_text(encoding="utf-8").split("\n") if ln]
            res["load_before_nltk"] = _load()
            t0 = time.perf_counter()
            nl = KneserNeyInterpolated(args.order)
            grams, vocab = padded_everygram_pipeline(args.order, sents)
            nl.fit(grams, vocab)
            t_nltk = time.perf_counter() - t0
            # lmforge again right after, so both see the same machine load
            _, t_again, _ = _best(lambda: train([train_f], cfg), args.repeats)
            sample = test_lines[0].split()[:60]
            t0 = time.perf_counter()
            for i, w in enumerate(sample):
                nl.logscore(w, sample[max(0, i - args.order + 1): i])
            t_nq = time.perf_counter() - t0
            res["nltk"] = {"fit_s": round(t_nltk, 3), "query_tokens_per_s": round(len(sample) / t_nq, 1),
                           "lmforge_train_s_same_time": round(t_again, 3)}
            res["train_speedup_vs_nltk"] = round(t_nltk / min(t_train, t_again), 1)
            res["load_after_nltk"] = _load()

        # ---- n-gram vs Transformer on tiny Shakespeare (characters)
        shak = DATA / "pretrain" / "tinyshakespeare" / "input.txt"
        if shak.exists():
            text = shak.read_text(encoding="utf-8")
            cut = int(len(text) * 0.9)
            (tmp / "s_train.txt").write_text(text[:cut], encoding="utf-8")
            (tmp / "s_val.txt").write_text(text[cut:], encoding="utf-8")
            if kenlm is not None:  # query speed on short lines (~10 words), where per-call overhead shows
                lines_all = [ln for ln in text.split("\n") if ln.strip()]
                k_cut = int(len(lines_all) * 0.9)
                (tmp / "w_train.txt").write_text("\n".join(lines_all[:k_cut]) + "\n", encoding="utf-8")
                wlm = train([tmp / "w_train.txt"], NgramConfig(order=args.order), tmp / "wlm")
                held = lines_all[k_cut:]
                n_w = sum(len(ln.split()) + 1 for ln in held)
                _, t_ours, _ = _best(lambda: wlm.score_lines(held), args.repeats)
                kw = kenlm.Model(str(tmp / "wlm" / "model.arpa"))
                _, t_theirs, _ = _best(lambda: sum(kw.score(ln) for ln in held), args.repeats)
                res["short_lines_query"] = {"data": f"tiny Shakespeare last 10%, {len(held)} lines, {n_w} tokens",
                                            "lmforge_tokens_per_s": round(n_w / t_ours),
                                            "kenlm_tokens_per_s": round(n_w / t_theirs),
                                            "speedup": round(t_theirs / t_ours, 2)}
            rows = []
            for order in (3, 6):
                t0 = time.perf_counter()
                train([tmp / "s_train.txt"], NgramConfig(order=order, unit="char"), tmp / f"char{order}")
                t_c = time.perf_counter() - t0
                r = evaluate_file(tmp / f"char{order}", tmp / "s_val.txt")
                rows.append({"order": order, "train_s": round(t_c, 2), "bits_per_char": r["bits_per_byte"],
                             "perplexity_per_token": r["perplexity"], "tokens": r["tokens"]})
            gpt = None
            pj = ROOT / "benchmarks" / "results" / "pretrain_shakespeare.json"
            if pj.exists():
                gpt = json.loads(pj.read_text())
            res["shakespeare_char"] = {"ngram": rows, "transformer": _gpt_rows(gpt)}
    res["versions"] = versions
    res["load_after"] = _load()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "ngram_lm.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out_dir / "ngram_lm.md").write_text(_markdown(res))
    print(json.dumps(res, indent=2))


def _gpt_rows(gpt) -> list[dict]:
    if not gpt:
        return []
    rows = []
    for r in gpt.get("results", []):
        if isinstance(r, dict) and "final_val_bpb" in r:
            rows.append({"run": r.get("name"), "bits_per_char": r["final_val_bpb"], "train_s": r.get("elapsed_s")})
    return rows


def _markdown(r: dict) -> str:
    f, k = r["lmforge"], r.get("kenlm_module", {})
    lines = ["# n-gram language models: lmforge vs KenLM vs NLTK", "",
             "Command: `python benchmarks/ngram_lm.py --lmplz /path/to/lmplz`", "",
             f"Machine: {r['machine']}; 1-minute load average {r['load_before']} before, {r['load_after']} after "
             "(the machine is shared; times are best of the repeats).", f"Versions: {r['versions']}", "",
             f"## WikiText-2 valid, modified Kneser-Ney {r['order']}-gram", "",
             f"Train: first 90% of lines ({r['data']['train_lines']} lines, {r['data']['train_tokens']:,} tokens); "
             f"test: last 10% ({r['data']['test_lines']} lines, {r['data']['test_tokens_with_eos']:,} tokens with </s>). "
             "Literal `<unk>` renamed `@unk@` for every system (KenLM rejects `<unk>` in training text).", "",
             "| | lmforge | KenLM | NLTK |", "|---|---|---|---|"]
    lp = r.get("lmplz") if isinstance(r.get("lmplz"), dict) else {}
    nl = r.get("nltk", {})
    lines += [
        f"| n-grams per order | {f['ngrams']} | {'same' if lp.get('same_ngram_counts') else '-'} | |",
        f"| test perplexity | {f['perplexity']:.4f} | {lp.get('perplexity', float('nan')):.4f} (lmplz) | - |",
        f"| train seconds | {f['train_s']} (count+estimate; +{f['save_with_arpa_s']} s to write npz+ARPA) | "
        f"{lp.get('train_s', '-')} (lmplz, ARPA out) | {nl.get('fit_s', '-')} (fit = counting only) |",
        f"| query tokens/s | {f['query_tokens_per_s']:,} (batch) | {k.get('query_tokens_per_s', 0):,} (Model.score per line) | "
        f"{nl.get('query_tokens_per_s', '-')} (logscore) |", ""]
    if "perplexity_ratio_lmforge_over_lmplz" in r:
        lines.append(f"- perplexity lmforge / lmplz: **{r['perplexity_ratio_lmforge_over_lmplz']:.6f}**")
    if k:
        lines.append(f"- lmforge's ARPA in the kenlm module: max |log10 p difference| over every test token "
                     f"**{k['max_abs_log10_diff_vs_lmforge']:.2e}**; perplexity there {k['perplexity_of_lmforge_arpa']:.4f}")
    lines.append(f"- ARPA write -> read -> write byte-identical: **{r['arpa_round_trip_identical']}** ({r['arpa_mb']} MB)")
    if "train_speedup_vs_nltk" in r:
        lines.append(f"- training speed-up vs NLTK: **{r['train_speedup_vs_nltk']}x** (lmforge rerun right after "
                     f"NLTK: {nl['lmforge_train_s_same_time']} s; load {r['load_before_nltk']} -> {r['load_after_nltk']})")
    if "query_speedup_vs_kenlm_score" in r:
        lines.append(f"- query speed vs kenlm `Model.score` called per sentence from Python: "
                     f"**{r['query_speedup_vs_kenlm_score']}x**")
    sl = r.get("short_lines_query")
    if sl:
        lines.append(f"- query speed on short lines ({sl['data']}, word {r['order']}-gram): lmforge "
                     f"{sl['lmforge_tokens_per_s']:,} tokens/s, kenlm `Model.score` {sl['kenlm_tokens_per_s']:,}: "
                     f"**{sl['speedup']}x**")
    lines.append(f"- KN discounts (D1, D2, D3+) per order: {f['discounts']}")
    ok = lambda b: "met" if b else "NOT met"  # noqa: E731
    lines += ["", "Targets (issue 8): perplexity within 1% of lmplz: "
              f"{ok(abs(r.get('perplexity_ratio_lmforge_over_lmplz', 9) - 1) <= 0.01)}; ARPA round trip exact: "
              f"{ok(r['arpa_round_trip_identical'])}; kenlm agrees <= 1e-4: "
              f"{ok(k.get('max_abs_log10_diff_vs_lmforge', 1) <= 1e-4)}; training >= 100x NLTK: "
              f"{ok(r.get('train_speedup_vs_nltk', 0) >= 100)}; queries >= kenlm Model.score: "
              f"{ok(r.get('query_speedup_vs_kenlm_score', 0) >= 1)}."]
    sc = r.get("shakespeare_char")
    if sc:
        lines += ["", "## n-gram vs Transformer, tiny Shakespeare characters (last 10% held out)", "",
                  "| model | bits/char | train s |", "|---|---|---|"]
        for row in sc["ngram"]:
            lines.append(f"| lmforge char {row['order']}-gram KN | {row['bits_per_char']:.4f} | {row['train_s']} |")
        for row in sc["transformer"]:
            lines.append(f"| GPT `{row['run']}` (benchmarks/results/pretrain_shakespeare.json) | "
                         f"{row['bits_per_char']:.4f} | {row['train_s']} |")
        lines += ["", "The n-gram scores the whole held-out 10% one line at a time (each newline = </s>, blank lines "
                  "skipped); the GPT figure is its validation loss on 64-character windows from the start of the "
                  "same 10%, so the two are close but not identical measurements."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
