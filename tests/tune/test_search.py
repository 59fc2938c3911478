"""lmforge tune: trials are recipe runs, the pruner hears the trainer's evaluations, a killed study
resumes its interrupted trial, the best values come back as a runnable recipe, bad keys are named."""

import json
import os
import subprocess
import sys

import pytest

from lmforge.cli import main
from lmforge.errors import ConfigError
from lmforge.recipe import load_recipe
from lmforge.tune.search import Search, params_dir

optuna = pytest.importorskip("optuna")
SPACE = """tune:
  space:
    finetune.train.lr: {log_uniform: [1.0e-3, 1.0e-1]}
    finetune.model.mlp_hidden: {choice: [8, 16]}
  trials: 3
  startup_trials: 1
"""


def test_search_writes_trials_best_recipe_plots_and_report(tiny_recipe, tmp_path):
    recipe = tiny_recipe(SPACE)
    assert main(["tune", recipe]) == 0
    tune = tmp_path / "runs" / "tiny" / "tune"
    r = json.loads((tune / "results.json").read_text())
    assert r["metric"] == "val_accuracy" and r["direction"] == "maximize"
    finished = [t for t in r["trials"] if t["state"] in ("complete", "pruned")]
    assert len(finished) == 3
    for t in r["trials"]:
        if t["state"] == "complete":  # the value is the best validation accuracy the trial logged
            rows = [json.loads(x) for x in open(os.path.join(t["dir"], "finetune/pretrained/metrics.jsonl"))]
            assert t["value"] == max(x["val_accuracy"] for x in rows if "val_accuracy" in x)
            assert os.path.basename(t["dir"]) == params_dir(t["params"])
            assert not os.path.exists(os.path.join(t["dir"], "evaluate"))  # the test set plays no part
            # the tokenizer stage ran once, in tune/base, and is shared (hard links), not retrained
            assert os.stat(os.path.join(t["dir"], "tokenizer/tokenizer.json")).st_ino == \
                (tune / "base" / "tokenizer" / "tokenizer.json").stat().st_ino
    best = load_recipe(tune / "best.yaml")
    assert best.name == "tiny-best" and best.tune is None
    assert best.finetune.train.lr == pytest.approx(r["best"]["params"]["finetune.train.lr"])
    assert best.finetune.model.mlp_hidden == r["best"]["params"]["finetune.model.mlp_hidden"]
    assert (tune / "history.png").stat().st_size > 1000
    report = (tmp_path / "runs" / "tiny" / "report.html").read_text()
    assert "Hyperparameter search" in report and "tune/best.yaml" in report
    # rerun with a larger budget: the finished trials are kept, one more is added
    assert main(["tune", recipe, "--trials", "4"]) == 0
    r2 = json.loads((tune / "results.json").read_text())
    assert len([t for t in r2["trials"] if t["state"] in ("complete", "pruned")]) == 4
    assert r2["trials"][:3] == r["trials"]


def test_the_pruner_stops_a_lagging_trial_at_an_evaluation(tiny_recipe):
    recipe = tiny_recipe(SPACE.replace("trials: 3", "trials: 2"))
    search = Search(recipe, progress=False)
    study = search.study()
    study.enqueue_trial({"finetune.train.lr": 0.05, "finetune.model.mlp_hidden": 16})
    study.enqueue_trial({"finetune.train.lr": 0.001, "finetune.model.mlp_hidden": 8})  # far too slow to learn
    r = search.run()
    good, slow = r["trials"]
    assert good["state"] == "complete" and slow["state"] == "pruned", r["trials"]
    assert slow["last_step"] < 150  # stopped before the end of its budget
    rows = [json.loads(x) for x in open(os.path.join(slow["dir"], "finetune/pretrained/metrics.jsonl"))]
    assert max(x["step"] for x in rows) == slow["last_step"]


def test_an_interrupted_trial_is_queued_again_into_its_own_directory(tiny_recipe):
    recipe = tiny_recipe(SPACE.replace("trials: 3", "trials: 1"))
    search = Search(recipe, progress=False)
    study = search.study()
    params = {"finetune.train.lr": 0.05, "finetune.model.mlp_hidden": 16}
    study.enqueue_trial(params)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    trial = study.ask()  # RUNNING, as a killed worker leaves it
    from lmforge.tune.search import suggest

    suggest(trial, search.cfg.space)
    import socket

    trial.set_user_attr("worker", f"{socket.gethostname()}:{dead.stdout.strip()}")
    r = Search(recipe, progress=False).run()
    states = [t["state"] for t in r["trials"]]
    assert states == ["fail", "complete"]
    assert r["trials"][1]["params"] == params and r["trials"][1]["resumed_from"] == 0
    assert r["trials"][1]["dir"].endswith(params_dir(params))


def test_search_with_folds_scores_the_held_out_folds(tiny_recipe):
    recipe = tiny_recipe(SPACE.replace("trials: 3", "trials: 1") + "  folds: 2\n")
    r = Search(recipe, progress=False).run()
    t = r["trials"][0]
    cv = json.loads(open(os.path.join(t["dir"], "cv/results.json")).read())
    assert t["value"] == pytest.approx(cv["summary"]["pretrained"]["accuracy"]["mean"])
    assert t["cv_std"] == pytest.approx(cv["summary"]["pretrained"]["accuracy"]["std"])


@pytest.mark.parametrize("key, message", [
    ("finetune.train.lrr", "did you mean finetune.train.lr"),
    ("finetune.peft.r", "finetune.peft is not set in the recipe"),
    ("finetune.train", "is a section, not a value"),
])
def test_a_search_key_that_does_not_exist_is_named(tiny_recipe, key, message):
    recipe = tiny_recipe(f"tune:\n  space:\n    {key}: {{uniform: [0.1, 0.2]}}\n")
    with pytest.raises(ConfigError, match=message):
        Search(recipe, progress=False)


def test_bad_space_forms_name_the_key(tiny_recipe):
    recipe = tiny_recipe("tune:\n  space:\n    finetune.train.lr: {log_uniform: [0, 1]}\n")
    with pytest.raises(ConfigError, match="tune.space.finetune.train.lr.log_uniform"):
        load_recipe(recipe)
