"""Active learning, simulated: accuracy against the number of labels for each strategy vs random.

Labels of a labeled pool are revealed as a strategy asks for them (``lmforge.label.active.simulate``):
a random seed set, then ``rounds`` rounds of ``step`` labels each; after each round the TF-IDF + LR
baseline (``eval/baselines.py``: features, classifier and 3-fold C search; vocabulary fit once on
the pool texts) is refit on what is labeled and scored on a fixed test set. Several seeds; a seed
fixes the seed set, which every strategy shares, so strategies are compared paired per seed.

- SST-2: pool = 20,000 random train phrases, test = dev (872 sentences); 200 + 10 x 200 labels.
- ChnSentiCorp: pool = 6,265 hotel reviews, test = 1,500 others; 50 + 10 x 50 labels.

    nice -n 10 python benchmarks/active_learning.py          # ~4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from labeling_data import RESULTS, chnsenticorp, environment, finish, header, sst2_dev, sst2_train_sample

STRATEGIES = ["random", "entropy", "margin", "least_confident", "diversity"]


def curves(name: str, texts, labels, test_texts, test_labels, seed_size: int, step: int, rounds: int,
           seeds: int) -> dict:
    from lmforge.label.active import TfidfLR, area_under_curve, simulate

    factory = TfidfLR(texts, seed=0)
    out: dict = {"pool": len(texts), "test": len(test_texts), "seed_size": seed_size, "step": step, "rounds": rounds,
                 "strategies": {}}
    for strategy in STRATEGIES:
        runs = []
        t = time.perf_counter()
        for seed in range(seeds):
            rows = simulate(texts, labels, test_texts, test_labels, strategy, seed_size, step, rounds,
                            model_factory=factory, seed=seed)
            runs.append(rows)
        acc = np.array([[r["accuracy"] for r in rows] for rows in runs])
        f1 = np.array([[r["macro_f1"] for r in rows] for rows in runs])
        out["strategies"][strategy] = {
            "n_labels": [r["n_labels"] for r in runs[0]], "accuracy_mean": acc.mean(0).round(4).tolist(),
            "accuracy_std": acc.std(0, ddof=1).round(4).tolist() if seeds > 1 else [0.0] * acc.shape[1],
            "macro_f1_mean": f1.mean(0).round(4).tolist(),
            "auc": [round(area_under_curve(rows), 4) for rows in runs],
            "final_accuracy": acc[:, -1].round(4).tolist(), "seconds": round(time.perf_counter() - t, 1)}
        print(f"{name} {strategy}: auc {np.mean(out['strategies'][strategy]['auc']):.4f} "
              f"final {acc[:, -1].mean():.4f} ({out['strategies'][strategy]['seconds']} s)", flush=True)
    base = out["strategies"]["random"]
    for s, r in out["strategies"].items():
        d = np.array(r["auc"]) - np.array(base["auc"])
        df = np.array(r["final_accuracy"]) - np.array(base["final_accuracy"])
        r["vs_random"] = {"auc_delta_mean": round(float(d.mean()), 4), "auc_wins": int((d > 0).sum()),
                          "final_delta_mean": round(float(df.mean()), 4), "final_wins": int((df > 0).sum())}
    return out


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        for s, r in res["strategies"].items():
            x, m, sd = np.array(r["n_labels"]), np.array(r["accuracy_mean"]), np.array(r["accuracy_std"])
            style = {"random": dict(color="black", ls="--")}.get(s, {})
            line, = ax.plot(x, m, marker="o", ms=3, label=s, **style)
            ax.fill_between(x, m - sd, m + sd, alpha=0.12, color=line.get_color())
        ax.set_title(f"{name}: TF-IDF + LR, {len(res['strategies']['random']['auc'])} seeds (mean ± sd)")
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: dict, seconds: float) -> str:
    lines = ["# Active learning, simulated: accuracy vs number of labels, each strategy against random", "",
             header(report["env"], seconds), "",
             "Labels of a labeled pool are revealed as the strategy asks (`lmforge.label.active.simulate`); the "
             "model after each round is the TF-IDF + logistic-regression baseline of `eval/baselines.py` (its "
             "features, classifier and 3-fold C search; vocabulary fit once on the pool texts, unsupervised), "
             "scored on a fixed test set. A seed fixes the random seed set, shared by every strategy, so the "
             "comparison with random is paired per seed. `diversity` = the 10 x k most uncertain rows (margin), "
             "uncertainty-weighted k-means into k clusters over 100-d LSA vectors of the TF-IDF rows, the row "
             "nearest each center. With two classes entropy, margin and least-confident order the rows "
             "identically (all are monotone in |p - 0.5|), so their rows agree exactly: one strategy measured "
             "three times.", "", "![accuracy vs labels](active_learning.png)", ""]
    for name, res in report["results"].items():
        strat = res["strategies"]
        lines += [f"## {name}: pool {res['pool']:,}, test {res['test']:,}, "
                  f"{res['seed_size']} + {res['rounds']} x {res['step']} labels", "",
                  "| strategy | " + " | ".join(f"{n:,}" for n in strat["random"]["n_labels"]) +
                  " | mean over curve | vs random (curve; seeds better) | vs random at the end (seeds better) |",
                  "|---|" + "---|" * (len(strat["random"]["n_labels"]) + 3)]
        for s, r in strat.items():
            cells = [f"{m:.3f}" for m in r["accuracy_mean"]]
            v = r["vs_random"]
            k = len(r["auc"])
            vs = ("" if s == "random" else f"{v['auc_delta_mean']:+.4f} ({v['auc_wins']}/{k})")
            fin = ("" if s == "random" else f"{v['final_delta_mean']:+.4f} ({v['final_wins']}/{k})")
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {np.mean(r['auc']):.4f} | {vs} | {fin} |")
        lines.append("")
    lines += ["## Findings", ""]
    for name, res in report["results"].items():
        parts = []
        for s, r in res["strategies"].items():
            if s == "random":
                continue
            v, k = r["vs_random"], len(r["auc"])
            verdict = ("beats" if v["auc_delta_mean"] > 0 and v["auc_wins"] == k else
                       "is ahead of, but not on every seed,"
                       if v["auc_delta_mean"] > 0 and v["auc_wins"] > k / 2 else "does not beat")
            parts.append(f"{s} {verdict} random ({v['auc_delta_mean']:+.4f} over the curve, better on "
                         f"{v['auc_wins']}/{k} seeds)")
        lines.append(f"- **{name}**: " + "; ".join(parts) + ".")
    lines += ["- Uncertainty sampling has a known failure right after a small seed set, visible here as a dip at "
              "the first round on the imbalanced ChnSentiCorp (69% positive): a 50-label model that calls "
              "everything positive finds the negatives most uncertain, asks for 50 of them, and the next model "
              "swings the other way; one more round repairs it. SST-2's pool is parse-tree phrases (many only a "
              "few words long), where the phrases a weak model is least sure of are likely to be short fragments "
              "that teach it little; there plain uncertainty sampling ties random over the curve, and it is the "
              "diversity strategy (uncertain *and* spread over the pool) that gains, by about a point.", ""]
    lines += ["Cells: test accuracy (mean over seeds) after that many labels. `mean over curve` is the "
              "trapezoid area under the accuracy-vs-labels curve divided by its width. Numbers are from "
              "`benchmarks/results/active_learning.json` (per-seed values and standard deviations there)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--sst2-pool", type=int, default=20000)
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md and .png from the saved .json")
    a = p.parse_args(argv)
    if a.markdown_only:
        report = json.loads((RESULTS / "active_learning.json").read_text())
        plot(report["results"], RESULTS / "active_learning.png")
        (RESULTS / "active_learning.md").write_text(markdown(report, report["seconds"]))
        return
    argv = sys.argv[1:] if argv is None else argv
    env = environment(argv)
    start = time.perf_counter()
    results = {}
    texts, labels = sst2_train_sample(a.sst2_pool, seed=0)
    dev_texts, dev_labels = sst2_dev()
    results["SST-2"] = curves("SST-2", texts, labels, dev_texts, dev_labels, 200, 200, 10, a.seeds)
    pool, pool_y, test, test_y = chnsenticorp(1500, seed=0)
    results["ChnSentiCorp"] = curves("ChnSentiCorp", pool, pool_y, test, test_y, 50, 50, 10, a.seeds)
    seconds = time.perf_counter() - start
    report = {"env": finish(env), "seconds": round(seconds, 1), "results": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "active_learning.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(results, RESULTS / "active_learning.png")
    (RESULTS / "active_learning.md").write_text(markdown(report, seconds))
    print(f"wrote {RESULTS / 'active_learning.md'} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
