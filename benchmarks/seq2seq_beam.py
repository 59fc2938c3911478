"""Beam-search translation throughput: lmforge ``Seq2Seq.generate(num_beams=4)`` vs transformers' ``generate``.

Both models are randomly initialised encoder-decoders of the same size (d_model, layers, heads, FFN,
vocab): ours, and a ``BartForConditionalGeneration`` built from a ``BartConfig``. Architectures differ
in details (BART is post-norm with an embedding LayerNorm; ours is pre-norm), the work per token is
the same. Both decode the same source batch with beam 4, length penalty 1, one returned sequence,
KV cache on, fp32, and with EOS disabled on both sides, so every hypothesis is exactly
``--new-tokens`` long and the two do the same number of decoder steps (checked).

Rounds alternate between the implementations so machine noise hits both alike; the best round
(least disturbed) and the median are reported, with ``os.getloadavg()`` before and after. Two sizes:
``base`` is compute-bound (the same GEMMs on both sides dominate), ``small`` shows the cost of the
generation loop itself (cache handling, beam bookkeeping, Python per step).

    python benchmarks/seq2seq_beam.py            # writes benchmarks/results/seq2seq_beam.{json,md}
    python benchmarks/seq2seq_beam.py --quick    # a smoke run (nothing saved)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# idle OpenMP threads sleep instead of spinning: on a shared machine spinning threads of 2-thread runs
# fight other jobs for the cores and calls slow down ~50x, noise that hits both sides at random
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
import transformers  # noqa: E402

from lmforge.models.generate import SamplingConfig  # noqa: E402
from lmforge.models.seq2seq import Seq2Seq, Seq2SeqConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results"
transformers.logging.set_verbosity_error()
PAD, BOS = 0, 1
# model sizes (d_model, layers each side, heads, FFN, vocab): "base" is compute-bound (the GEMMs both
# sides share dominate), "small" shows the per-step overhead of the generation loops themselves
SIZES = {"small": dict(d_model=128, layers=2, heads=4, ffn=512, vocab=4096),
         "base": dict(d_model=256, layers=3, heads=4, ffn=1024, vocab=8192)}


def build(a):
    torch.manual_seed(0)
    ours = Seq2Seq(Seq2SeqConfig(vocab_size=a.vocab, block_size=max(a.src_len, a.new_tokens + 1), d_model=a.d_model,
                                 n_encoder_layer=a.layers, n_decoder_layer=a.layers, n_head=a.heads,
                                 mlp_hidden=a.ffn, pad_token_id=PAD, decoder_start_token_id=BOS,
                                 eos_token_id=None)).eval()
    cfg = transformers.BartConfig(
        vocab_size=a.vocab, d_model=a.d_model, encoder_layers=a.layers, decoder_layers=a.layers,
        encoder_attention_heads=a.heads, decoder_attention_heads=a.heads, encoder_ffn_dim=a.ffn,
        decoder_ffn_dim=a.ffn, max_position_embeddings=max(a.src_len, a.new_tokens + 1), dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=None,
        decoder_start_token_id=BOS, forced_bos_token_id=None, forced_eos_token_id=None)
    theirs = transformers.BartForConditionalGeneration(cfg).eval()
    gc = theirs.generation_config
    gc.eos_token_id = gc.forced_eos_token_id = gc.forced_bos_token_id = None
    gc.no_repeat_ngram_size = 0
    return ours, theirs


def bench(a, size: str) -> dict:
    a = argparse.Namespace(**{**vars(a), **SIZES[size]})
    ours, theirs = build(a)
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, a.vocab, (a.batch, a.src_len), generator=g)
    lengths = torch.randint(a.src_len // 2, a.src_len + 1, (a.batch,), generator=g)
    mask = (torch.arange(a.src_len)[None] < lengths[:, None]).long()
    src = src.masked_fill(mask == 0, PAD)  # ragged sources, right-padded, the mask given to both
    n = a.new_tokens
    cfg = SamplingConfig(max_new_tokens=n, temperature=0.0, top_k=None)

    def run_ours():
        return ours.generate(src, cfg, attention_mask=mask, num_beams=a.beams)

    def run_theirs():
        with torch.no_grad():
            return theirs.generate(input_ids=src, attention_mask=mask, num_beams=a.beams, max_new_tokens=n,
                                   length_penalty=1.0, early_stopping=True, do_sample=False, num_return_sequences=1,
                                   use_cache=True)

    out_ours, out_theirs = run_ours(), run_theirs()  # also the warm-up
    same_length = all(len(r) == n for r in out_ours) and tuple(out_theirs.shape) == (a.batch, n + 1)
    if not same_length:
        raise SystemExit(f"output lengths differ: ours {[len(r) for r in out_ours]}, theirs {tuple(out_theirs.shape)}")
    times = {"lmforge": [], "transformers": []}
    cpu = {"lmforge": [], "transformers": []}  # CPU seconds of this process: what waiting for a core does not inflate
    for _ in range(a.rounds):
        for name, fn in (("lmforge", run_ours), ("transformers", run_theirs)):
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    r = {"size": SIZES[size]}
    for name, ts in times.items():
        r[name] = {"best_sentences_per_s": round(a.batch / min(ts), 2),
                   "median_sentences_per_s": round(a.batch / statistics.median(ts), 2),
                   "seconds_per_call": [round(x, 4) for x in ts],
                   "median_cpu_seconds_per_call": round(statistics.median(cpu[name]), 4),
                   "cpu_seconds_per_call": [round(x, 4) for x in cpu[name]]}
    r["speedup_best"] = round(r["lmforge"]["best_sentences_per_s"] / r["transformers"]["best_sentences_per_s"], 3)
    r["speedup_median"] = round(r["lmforge"]["median_sentences_per_s"] / r["transformers"]["median_sentences_per_s"], 3)
    r["speedup_cpu_time"] = round(r["transformers"]["median_cpu_seconds_per_call"]
                                  / r["lmforge"]["median_cpu_seconds_per_call"], 3)
    r["params"] = {"lmforge": ours.num_params(False), "transformers": theirs.num_parameters()}
    r["same_output_length"] = same_length
    return r


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="source sentences per generate call")
    p.add_argument("--src-len", type=int, default=24)
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--size", choices=list(SIZES), action="append", help="model sizes to run (default: all)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny run to check the script works (results not saved)")
    p.add_argument("--note", default="", help="free text stored with the results")
    a = p.parse_args(argv)
    sizes = a.size or list(SIZES)
    if a.quick:
        a.batch, a.src_len, a.new_tokens, a.rounds, sizes = 2, 8, 6, 1, ["small"]
    torch.set_num_threads(a.threads)
    results = {"command": "python " + " ".join([sys.argv[0].replace(str(Path.cwd()) + "/", "")] + sys.argv[1:]),
               "settings": {**{k: v for k, v in vars(a).items() if k not in ("quick", "note", "size")}, "sizes": sizes},
               "note": a.note,
               "env": {"torch": torch.__version__, "transformers": transformers.__version__,
                       "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                       "cores": os.cpu_count(), "threads": torch.get_num_threads(), "dtype": "float32",
                       "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "load_average_before": [round(x, 2) for x in os.getloadavg()]}}
    for size in sizes:
        r = results[size] = bench(a, size)
        print(f"{size:6s} lmforge {r['lmforge']['best_sentences_per_s']:.1f} sent/s   transformers "
              f"{r['transformers']['best_sentences_per_s']:.1f} sent/s   x{r['speedup_best']} best round, "
              f"x{r['speedup_median']} median, x{r['speedup_cpu_time']} in CPU time; "
              f"load {[round(x, 2) for x in os.getloadavg()]}", flush=True)
    results["env"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if a.quick:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "seq2seq_beam.json").write_text(json.dumps(results, indent=2) + "\n")
    load = max(results["env"]["load_average_before"][0], results["env"]["load_average_after"][0])
    shared = (f"The machine was shared while this ran (1-minute load average up to {load:.2f} on "
              f"{os.cpu_count()} cores), so absolute rates are low and noisy; the alternating rounds and the "
              "best-of-N rate are what make the ratio fair.") if load > 1 else "The machine was quiet (load <= 1)."
    def row(size: str) -> str:
        z, r = SIZES[size], results[size]
        ours, theirs = r["lmforge"], r["transformers"]
        return (f"| {size} ({z['d_model']}d, {z['layers']}+{z['layers']} layers, {z['heads']} heads, FFN {z['ffn']}, "
                f"vocab {z['vocab']}) | {ours['best_sentences_per_s']:.2f} | {theirs['best_sentences_per_s']:.2f} | "
                f"{r['speedup_best']:.2f}x | {ours['median_sentences_per_s']:.2f} | "
                f"{theirs['median_sentences_per_s']:.2f} | {r['speedup_median']:.2f}x | "
                f"{ours['median_cpu_seconds_per_call']:.2f} | {theirs['median_cpu_seconds_per_call']:.2f} | "
                f"{r['speedup_cpu_time']:.2f}x |")

    rows = [row(size) for size in sizes]
    md = ["# Seq2seq beam search: lmforge vs transformers", "", f"Command: `{results['command']}`", "",
          f"Environment: {json.dumps(results['env'])}", "", *([f"Note: {a.note}", ""] if a.note else []),
          f"Settings: {json.dumps(results['settings'])}", "",
          "| model | lmforge sent/s (best) | transformers BART (best) | speedup (best) | lmforge (median) "
          "| transformers (median) | speedup (median) | lmforge CPU s/call | transformers CPU s/call "
          "| speedup (CPU time) |", "|---|---|---|---|---|---|---|---|---|---|", *rows, "",
          f"Beam {a.beams}, {a.batch} ragged sources of up to {a.src_len} tokens (same batch and attention mask for "
          f"both), exactly {a.new_tokens} new tokens per hypothesis on both sides (EOS disabled; checked), KV cache "
          f"on, fp32, {a.threads} threads; {a.rounds} alternating rounds after one warm-up call each. CPU time is the "
          "process's own CPU seconds per call (median): on a busy machine it is the steadier measure of work done.",
          "", shared, "",
          "Where the difference comes from: both sides run the same GEMMs (the vocabulary projection of every "
          "beam is about 40% of them at `base`), so a compute-bound model can only gain on what the loop does "
          "around them. lmforge runs the first decoder step once per source instead of once per beam, never "
          "re-projects or reorders the cross-attention keys (beams of one source share them), writes the "
          "self-attention cache in place, and keeps its beam bookkeeping to a few tensor ops per step; "
          "transformers reorders self- and cross-attention caches every step and runs its logits processors "
          "and stopping criteria. The smaller the model, the larger that share, hence the two sizes."]
    (RESULTS / "seq2seq_beam.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
