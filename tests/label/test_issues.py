"""Label-error detection: out-of-fold probabilities + cleanlab find most of the labels flipped on
purpose, through the TF-IDF + LR default and through a (tiny) fine-tuning recipe via lmforge cv."""

import csv
import json
import random

import numpy as np
import pytest

from lmforge.errors import ConfigError
from lmforge.label.issues import (find_issues, flip_labels, out_of_fold_probs, precision_recall_at_k, rank_issues,
                                  read_labeled)


def test_flip_labels_changes_exactly_that_many_to_another_label():
    labels = ["a", "b", "c"] * 100
    noisy, flipped = flip_labels(labels, 0.1, seed=3)
    changed = [i for i, (x, y) in enumerate(zip(labels, noisy)) if x != y]
    assert changed == flipped.tolist() and len(changed) == 30
    assert flip_labels(labels, 0.1, seed=3)[1].tolist() == flipped.tolist()


def test_ranking_is_by_the_out_of_fold_probability_of_the_given_label():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.95, 0.05], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
    given = ["0", "1", "1", "0", "0", "1"]  # rows 2 and 4 look wrong
    r = rank_issues(given, probs, ["0", "1"])
    assert r["quality"].tolist() == pytest.approx([0.9, 0.8, 0.05, 0.6, 0.3, 0.9])
    assert r["order"][:2].tolist() == [2, 4]
    assert r["suggested"].tolist() == [0, 1, 0, 0, 1, 1]
    assert precision_recall_at_k([str(i) for i in r["order"]], {"2", "4"}, 2) == (1.0, 1.0)


def test_too_many_folds_for_a_rare_label():
    with pytest.raises(ConfigError, match="label 'b' has 2"):
        out_of_fold_probs(["x"] * 12, ["a"] * 10 + ["b"] * 2, folds=5)


@pytest.fixture(scope="module")
def chnsenticorp_file(shared_datasets, tmp_path_factory):
    """2,000 hotel reviews with 10% of their labels flipped; returns (file, flipped ids)."""
    path = shared_datasets / "classification/chnsenticorp/ChnSentiCorp_htl_all.csv"
    if not path.exists():
        pytest.skip(f"{path} missing")
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["review"]]
    picked = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))[:2000]]
    noisy, flipped = flip_labels([r["label"] for r in picked], 0.10, seed=1)
    out = tmp_path_factory.mktemp("issues") / "noisy.jsonl"
    out.write_text("".join(json.dumps({"id": f"r{i}", "text": r["review"], "label": y}, ensure_ascii=False) + "\n"
                           for i, (r, y) in enumerate(zip(picked, noisy))))
    return out, {f"r{i}" for i in flipped}


def test_finds_most_flipped_labels_on_chnsenticorp(chnsenticorp_file):
    data, flipped = chnsenticorp_file
    rows = find_issues(data, folds=5, all_rows=True)
    assert len(rows) == 2000 and [r["rank"] for r in rows] == list(range(1, 2001))
    assert set(rows[0]) == {"id", "given_label", "suggested_label", "score", "rank", "is_issue", "text"}
    p, r = precision_recall_at_k([x["id"] for x in rows], flipped, len(flipped))
    assert p > 0.5, p  # measured 0.65; the flip rate is 0.1: ranking at random would give 0.1
    flagged = {x["id"] for x in rows if x["is_issue"]}
    assert len(flagged & flipped) / len(flipped) > 0.6  # confident learning's own cut finds most of them
    top = rows[0]
    assert top["suggested_label"] != top["given_label"] and top["score"] < 0.2


def test_cli_issues_writes_the_flagged_rows(chnsenticorp_file, tmp_path):
    import typer
    from typer.testing import CliRunner

    from lmforge.label.cli_extra import issues

    data, flipped = chnsenticorp_file
    app = typer.Typer()
    app.command()(issues)
    app.command("noop")(lambda: None)
    out = tmp_path / "issues.jsonl"
    r = CliRunner().invoke(app, ["issues", "--data", str(data), "--folds", "3", "--output", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all(x["is_issue"] for x in rows)
    assert sum(x["id"] in flipped for x in rows) / len(rows) > 0.4  # flagged rows are mostly truly flipped
    assert [x["score"] for x in rows] == sorted(x["score"] for x in rows)


POS = "good great fine happy lovely superb nice".split()
NEG = "bad awful sad angry poor terrible nasty".split()
FILL = "the a movie film plot actor story was is and it this".split()


def test_recipe_model_through_cross_validation(tmp_path):
    """A from-zero bag-of-words classifier fine-tuned per fold by lmforge cv: its held-out
    probabilities find labels flipped in a file where one sentiment word decides the label."""
    rng = random.Random(0)
    rows = []
    for i in range(240):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(FILL, 5) + [rng.choice(POS if label == "pos" else NEG)]
        rng.shuffle(words)
        rows.append({"id": f"s{i}", "text": " ".join(words), "label": label})
    noisy, flipped = flip_labels([r["label"] for r in rows], 0.1, seed=2)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({**r, "label": y}) + "\n" for r, y in zip(rows, noisy)))
    (tmp_path / "corpus.txt").write_text("\n".join(r["text"] for r in rows) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: tiny
runs_root: {tmp_path / 'runs'}
tokenizer: {{kind: wordpiece, family: bert, vocab_size: 120, files: [{tmp_path / 'corpus.txt'}]}}
finetune:
  task: {{kind: classification, max_len: 16}}
  model: {{family: bow, n_layer: 1, d_model: 16, mlp_hidden: 16}}
  data: {{train: {tmp_path / 'unused.jsonl'}, val_fraction: 0.2}}
  train: {{max_steps: 150, batch_size: 16, lr: 3.0e-2, warmup_steps: 2, eval_every: 30, eval_batches: 4,
          metric_for_best: val_accuracy, threads: 1}}
""")
    out = find_issues(data, folds=3, recipe=recipe, all_rows=True)
    ids, _, _ = read_labeled(data)
    assert sorted(r["id"] for r in out) == sorted(ids)  # every row scored once, by the fold that held it out
    p, _ = precision_recall_at_k([r["id"] for r in out], {f"s{i}" for i in flipped}, len(flipped))
    assert p > 0.75, p  # measured 0.96
    assert out[0]["text"] and out[0]["suggested_label"] != out[0]["given_label"]
