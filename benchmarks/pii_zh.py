"""PII redaction on mixed Chinese/English text: recall on generated PII, false positives on real corpora.

Recall: PII values (e-mail, Chinese mobile, card numbers with valid Luhn, after another number too)
written straight between Chinese characters or English words, in templates; a value counts as found
when it no longer appears in the output. False positives: replacements made on the shared
pretraining corpora (which hold no real PII we know of: every replacement there is counted as a false
positive), per MB, for the code before the fix (git HEAD~ copy passed with --old) and now.
Usage: python benchmarks/pii_zh.py --old /tmp/pii/pii_old.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LMFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))

TEMPLATES_ZH = ["请联系{v}获取", "电话{v}转人工", "邮箱：{v}，谢谢", "卡号{v}已冻结", "订单 {n} {v} 已支付", "把{v}发给我"]
TEMPLATES_EN = ["contact {v} for details", "call {v} now", "order {n} {v} paid", "mail:{v}."]


def _luhn_complete(prefix: str, rnd: random.Random, length: int = 16) -> str:
    """A random card number with a valid check digit (the project's own Luhn check picks it)."""
    from lmforge.data.steps.pii import luhn_ok

    body = prefix + "".join(str(rnd.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    return next(body + c for c in "0123456789" if luhn_ok(body + c))


def values(rnd: random.Random) -> list[tuple[str, str]]:
    out = []
    for _ in range(200):
        user = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 8)))
        out.append(("email", f"{user}{rnd.randint(1, 99)}@{rnd.choice(['qq.com', '163.com', 'gmail.com', 'example.org'])}"))
        out.append(("phone", "1" + rnd.choice("3456789") + "".join(str(rnd.randint(0, 9)) for _ in range(9))))
        card = _luhn_complete(rnd.choice(["4", "51", "62"]), rnd)
        out.append(("credit_card", rnd.choice([card, " ".join(card[i:i + 4] for i in range(0, 16, 4))])))
    return out


def load(path: str | None):
    if path is None:
        from lmforge.data.steps import pii
        return pii
    spec = importlib.util.spec_from_file_location("pii_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def recall(mod, rnd: random.Random) -> dict:
    found, total = {}, {}
    for kind, v in values(rnd):
        for tpl in TEMPLATES_ZH + TEMPLATES_EN:
            text = tpl.format(v=v, n=rnd.randint(1, 999))
            out, _ = mod.redact(text)
            total[kind] = total.get(kind, 0) + 1
            found[kind] = found.get(kind, 0) + (v not in out)
    return {k: round(found[k] / total[k], 4) for k in total} | {"n": sum(total.values())}


def false_positives(mod) -> dict:
    out = {}
    for name, pattern in (("wikitext2 (en)", "wikitext2/*"), ("gutenberg (en)", "gutenberg/*"),
                          ("zh_novels (zh)", "zh_novels/*"), ("zh_classical (zh)", "zh_classical/*")):
        files = sorted(p for p in (DATA / "pretrain").glob(pattern) if p.is_file() and p.suffix in (".txt", ".tokens", ".raw", ".jsonl"))
        mb, n, kinds = 0.0, 0, {}
        for f in files:
            text = f.read_text(encoding="utf-8", errors="replace")
            mb += len(text.encode()) / 1e6
            for line in text.splitlines():
                _, c = mod.redact(line)
                for k, v in c.items():
                    kinds[k] = kinds.get(k, 0) + v
                    n += v
        out[name] = {"mb": round(mb, 2), "replacements": n, "per_mb": round(n / max(mb, 1e-9), 3), "by_kind": kinds}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", help="a copy of the pii module before the fix, for the side-by-side")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    res = {"command": "python benchmarks/pii_zh.py" + (f" --old {args.old}" if args.old else ""),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for label, path in (("before", args.old), ("now", None)):
        if label == "before" and path is None:
            continue
        mod = load(path)
        res[label] = {"recall": recall(mod, random.Random(0)), "false_positives": false_positives(mod)}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "pii_zh.json").write_text(json.dumps(res, ensure_ascii=False, indent=2), encoding="utf-8")
    print(json.dumps(res, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    sys.exit(main())
