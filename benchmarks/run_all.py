"""Run every benchmark in this folder, one after another (``make bench``).

Each benchmark writes its own ``results/*.json`` and ``.md`` with the exact command that produced
it. Benchmarks time things: run them on a quiet machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    ["data_pipeline.py"],
    ["tokenizer_speed.py", "--out", str(HERE / "results" / "tokenizer_speed.json")],
    ["models_throughput.py"],
    ["pretrain_shakespeare.py"],
    ["augment_speed.py"],
    ["weak_labels.py"],
    ["label_issues.py"],
    ["active_learning.py"],
]


def main() -> int:
    failed = []
    for args in BENCHMARKS:
        script = HERE / args[0]
        if not script.exists():
            print(f"skip {args[0]} (not present)")
            continue
        print(f"== {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(script), *args[1:]]).returncode != 0:
            failed.append(args[0])
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
