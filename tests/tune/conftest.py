"""A tiny from-zero classification recipe (word tokenizer, bag-of-words model) that trains in a second."""

import json
import random

import pytest

POS = "good great fine happy lovely superb nice".split()
NEG = "bad awful sad angry poor terrible nasty".split()
FILL = "the a movie film plot actor story was is and it this".split()


def write_recipe(tmp_path, extra: str = "", n: int = 240, copies: int = 0) -> str:
    """Sentences with one sentiment word among fillers; ``copies`` near-duplicate pairs added."""
    rng = random.Random(0)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(FILL, 5) + [rng.choice(POS if label == "pos" else NEG)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    for i in range(copies):
        rows.append({"text": rows[i]["text"] + " indeed", "label": rows[i]["label"]})
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "corpus.txt").write_text("\n".join(r["text"] for r in rows) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: tiny
runs_root: {tmp_path / 'runs'}
tokenizer: {{kind: wordpiece, family: bert, vocab_size: 120, files: [{tmp_path / 'corpus.txt'}]}}
finetune:
  task: {{kind: classification, max_len: 16}}
  model: {{family: bow, n_layer: 1, d_model: 16, mlp_hidden: 16}}
  data: {{train: {data}, val_fraction: 0.2}}
  train: {{max_steps: 150, batch_size: 16, lr: 3.0e-2, warmup_steps: 2, eval_every: 30, eval_batches: 4,
          metric_for_best: val_accuracy, threads: 1}}
{extra}""")
    return str(recipe)


@pytest.fixture
def tiny_recipe(tmp_path):
    return lambda extra="", **kw: write_recipe(tmp_path, extra, **kw)
