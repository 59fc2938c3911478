"""Side-by-side throughput of lmforge models against Hugging Face transformers, same sizes, same run.

1. GPT train step (forward + backward + AdamW), fp32: ours vs ``GPT2LMHeadModel``.
2. BERT masked-LM train step: ours vs ``BertForMaskedLM``.
3. Greedy generation with a KV cache, batch 1: ours (``generate``) vs ``model.generate``; the two models
   carry the same weights (ours exported to the GPT-2 layout) and must produce the same tokens.

Train-step rounds alternate between the two implementations so machine noise hits both alike;
warm-up steps are excluded; the median round is reported.

    python benchmarks/models_throughput.py            # writes benchmarks/results/models_throughput.{json,md}
    python benchmarks/models_throughput.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
import transformers  # noqa: E402

from lmforge.models.bert import BERT, BertConfig, MaskingInfo, mask_tokens  # noqa: E402
from lmforge.models.generate import SamplingConfig, generate  # noqa: E402
from lmforge.models.gpt import GPT, GPTConfig  # noqa: E402
from lmforge.models.hf import export_hf  # noqa: E402
from lmforge.models.io import save_model  # noqa: E402

RESULTS = Path(__file__).parent / "results"
transformers.logging.set_verbosity_error()


def train_step_fn(model, batch, hf: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)  # foreach AdamW for both
    model.train()

    def step():
        if hf:
            loss = model(**batch).loss
        else:
            loss = model(*batch["ours"], **batch.get("ours_kw", {}))[1]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def race(steps: dict, tokens_per_step: int, warmup: int, rounds: int, per_round: int) -> dict:
    """Alternate rounds of ``per_round`` steps between implementations; median tokens/s for each."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    rates = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            t = time.perf_counter()
            for _ in range(per_round):
                fn()
            rates[name].append(tokens_per_step * per_round / (time.perf_counter() - t))
    # median = typical; best = the least disturbed round (robust when other jobs share the CPU)
    return {name: {"tokens_per_s": round(statistics.median(r), 1), "best_tokens_per_s": round(max(r), 1),
                   "rounds": [round(x, 1) for x in r]} for name, r in rates.items()}


def bench_gpt(a) -> dict:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=a.vocab, block_size=a.ctx, n_layer=6, n_head=6, d_model=384)
    ours = GPT(cfg)
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=a.vocab, n_positions=a.ctx, n_embd=384, n_layer=6, n_head=6, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0))
    x = torch.randint(0, a.vocab, (a.batch, a.ctx + 1))
    # both predict the next token over ctx positions: ours gets shifted targets, transformers shifts labels itself
    steps = {"lmforge": train_step_fn(ours, {"ours": (x[:, :-1], x[:, 1:])}, False),
             "transformers": train_step_fn(theirs, {"input_ids": x[:, :-1], "labels": x[:, :-1]}, True)}
    out = race(steps, a.batch * a.ctx, a.warmup, a.rounds, a.per_round)
    out["params"] = {"lmforge": ours.num_params(False), "transformers": theirs.num_parameters()}
    return out


def bench_bert(a) -> dict:
    torch.manual_seed(0)
    ours = BERT(BertConfig(vocab_size=a.vocab, block_size=a.ctx, n_layer=6, n_head=6, d_model=384, dropout=0.1))
    theirs = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=a.vocab, hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536,
        max_position_embeddings=a.ctx, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))
    ids = torch.randint(5, a.vocab, (a.batch, a.ctx))
    ids[:, 0] = 1
    inputs, labels = mask_tokens(ids, MaskingInfo(4, a.vocab, [0, 1, 2, 3, 4]), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    steps = {"lmforge": train_step_fn(ours, {"ours": (inputs, labels), "ours_kw": {"attention_mask": mask}}, False),
             "transformers": train_step_fn(theirs, {"input_ids": inputs, "labels": labels, "attention_mask": mask}, True)}
    out = race(steps, a.batch * a.ctx, a.warmup, a.rounds, a.per_round)
    out["params"] = {"lmforge": ours.num_params(False), "transformers": theirs.num_parameters()}
    return out


def bench_generate(a) -> dict:
    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=a.vocab, block_size=a.ctx, n_layer=6, n_head=6, d_model=384)).eval()
    with tempfile.TemporaryDirectory() as d:
        save_model(ours, Path(d) / "ours")
        export_hf(Path(d) / "ours", Path(d) / "hf")
        theirs = transformers.AutoModelForCausalLM.from_pretrained(Path(d) / "hf").eval()
    prompt = torch.randint(0, a.vocab, (1, a.prompt)).tolist()[0]
    n = a.new_tokens
    cfg = SamplingConfig(max_new_tokens=n, temperature=0.0, top_k=None)

    def run_ours():
        return generate(ours, prompt, cfg)

    def run_theirs():
        with torch.no_grad():
            out = theirs.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                  pad_token_id=0)
        return out[0, len(prompt):].tolist()

    same = run_ours() == run_theirs()
    out = race({"lmforge": run_ours, "transformers": run_theirs}, n, 1, a.rounds, 1)
    out["same_tokens"] = same
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=3)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny run to check the script works (results not saved)")
    p.add_argument("--only", choices=["gpt", "bert", "generate"], action="append")
    p.add_argument("--note", default="", help="free text stored with the results (e.g. machine load)")
    a = p.parse_args(argv)
    if a.quick:
        a.batch, a.ctx, a.warmup, a.rounds, a.per_round, a.new_tokens = 2, 64, 1, 1, 1, 8
    torch.set_num_threads(a.threads)
    results = {"command": "python " + " ".join([sys.argv[0].replace(str(Path.cwd()) + "/", "")] + sys.argv[1:]),
               "settings": {k: v for k, v in vars(a).items() if k not in ("quick", "only", "note")},
               "note": a.note,
               "env": {"torch": torch.__version__, "transformers": transformers.__version__,
                       "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                       "threads": torch.get_num_threads(), "dtype": "float32",
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "load_average_before": [round(x, 2) for x in os.getloadavg()]}}
    for name, fn in [("gpt_train", bench_gpt), ("bert_mlm_train", bench_bert), ("generate_greedy", bench_generate)]:
        if a.only and name.split("_")[0] not in a.only:
            continue
        r = fn(a)
        r["speedup"] = round(r["lmforge"]["tokens_per_s"] / r["transformers"]["tokens_per_s"], 3)
        r["speedup_best"] = round(r["lmforge"]["best_tokens_per_s"] / r["transformers"]["best_tokens_per_s"], 3)
        results[name] = r
        print(f"{name:16s} lmforge {r['lmforge']['tokens_per_s']:9.1f} tok/s   transformers "
              f"{r['transformers']['tokens_per_s']:9.1f} tok/s   x{r['speedup']} (best rounds x{r['speedup_best']})",
              flush=True)
    if a.quick:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    results["env"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    (RESULTS / "models_throughput.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = [f"| {k} | {results[k]['lmforge']['tokens_per_s']:.0f} | {results[k]['transformers']['tokens_per_s']:.0f} "
            f"| {results[k]['speedup']:.2f}x | {results[k]['lmforge']['best_tokens_per_s']:.0f} | "
            f"{results[k]['transformers']['best_tokens_per_s']:.0f} | {results[k]['speedup_best']:.2f}x |" for k in ("gpt_train", "bert_mlm_train", "generate_greedy") if k in results]
    md = ["# Model throughput: lmforge vs transformers", "", f"Command: `{results['command']}`", "",
          f"Environment: {json.dumps(results['env'])}", "", *([f"Note: {a.note}", ""] if a.note else []), f"Settings: {json.dumps(results['settings'])}", "",
          "| benchmark | lmforge tokens/s (median) | transformers (median) | speedup | lmforge (best round) "
          "| transformers (best round) | speedup (best) |", "|---|---|---|---|---|---|---|", *rows, "",
          "Train steps include forward, backward and the AdamW step (fp32, warm-up excluded, median of alternating "
          "rounds). Generation is greedy, batch 1, KV cache on both sides, same weights"
          + (f" (identical tokens: {results['generate_greedy']['same_tokens']})" if "generate_greedy" in results else "")
          + "."]
    (RESULTS / "models_throughput.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
