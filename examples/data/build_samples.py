"""Rebuild the quickstart samples from SST-2 (../shared/datasets/classification/sst2).

Run from the repo root: python examples/data/build_samples.py
Deterministic (fixed seed). See SOURCE.md for provenance and terms.
"""

from __future__ import annotations

import html
import json
import os
import random
from pathlib import Path

SRC = Path(os.environ.get("LMFORGE_DATASETS", "../shared/datasets")) / "classification" / "sst2"
OUT = Path(__file__).parent
rng = random.Random(20261123)


def read_tsv(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    rows = []
    for line in lines:
        text, label = line.rstrip("\r").rsplit("\t", 1)
        rows.append((text.strip(), label.strip()))
    return rows


train = read_tsv(SRC / "train.tsv")
dev = read_tsv(SRC / "dev.tsv")
label_name = {"0": "negative", "1": "positive"}

# Labeled fine-tuning sample: 2,000 phrases of 6+ words from SST-2 train; test: 600 dev sentences.
long_enough = [r for r in train if len(r[0].split()) >= 6]
rng.shuffle(long_enough)
labeled = long_enough[:2000]
test = rng.sample(dev, 600)
(OUT / "sentiment").mkdir(exist_ok=True)
for name, rows in (("train", labeled), ("test", test)):
    with open(OUT / "sentiment" / f"{name}.jsonl", "w", encoding="utf-8") as f:
        for i, (t, y) in enumerate(rows):
            f.write(json.dumps({"id": f"sst2-{name}-{i}", "text": t, "label": label_name[y]}) + "\n")

# Unlabeled in-domain text: other SST-2 train phrases of 10+ words, no labels, as mixed raw files.
used = {t for t, _ in labeled}
pool = [t for t, _ in train if len(t.split()) >= 10 and t not in used]
rng.shuffle(pool)
pool = pool[:11000]
txt, jsonl, pages = pool[:4500], pool[4500:9000], pool[9000:]
raw = OUT / "raw"
(raw / "web").mkdir(parents=True, exist_ok=True)
# .txt: one review per paragraph (blank line between), as in a plain-text dump
(raw / "reviews.txt").write_text("\n\n".join(txt) + "\n", encoding="utf-8")
# .jsonl: one record per review, with its own id; a few exact duplicates as real dumps have
with open(raw / "reviews.jsonl", "w", encoding="utf-8") as f:
    for i, t in enumerate(jsonl + jsonl[:150]):
        f.write(json.dumps({"id": f"review-{i}", "text": t}) + "\n")
# .html: review pages wrapped in navigation, a cookie banner, scripts and a footer (boilerplate to strip)
for p in range(0, len(pages), 50):
    body = "\n".join(f"<p>{html.escape(t)}</p>" for t in pages[p : p + 50])
    page = f"""<!doctype html><html><head><title>Reader reviews, page {p // 50 + 1}</title>
<script>window.dataLayer=[];function track(){{}}</script><style>.nav{{color:red}}</style></head>
<body><nav class="nav"><a href="/">Home</a> | <a href="/movies">Movies</a> | <a href="/login">Log in</a></nav>
<div class="cookie-banner">We use cookies to improve your experience. <button>Accept all cookies</button></div>
<main><article><h1>What our readers thought</h1>
{body}
</article></main>
<footer>Copyright 2026 Example Reviews Ltd. All rights reserved. <a href="/privacy">Privacy</a> <a href="/terms">Terms</a></footer>
</body></html>
"""
    (raw / "web" / f"page{p // 50 + 1:02d}.html").write_text(page, encoding="utf-8")
# noise a real scrape contains: link lists, symbol soup, keyboard mash, a contact line with PII
noise = [
    "home | about | contact | login | register | faq | sitemap | rss | privacy | terms",
    "$$$ !!! ### @@@ %%% ^^^ &&& *** $$$ !!! ### @@@ %%% ^^^ &&& ***",
    "asdkjh qwpoeiru zmxncb lkajsdf qwoieur zxmcnv alskdjf qpwoeir zmxcnbv",
    "click here click here click here click here click here click here click here",
    "for press enquiries write to critic.desk@example.com or call +1 415 555 0134 , we answer within a day .",
]
(raw / "scraped_noise.txt").write_text("\n\n".join(noise) + "\n", encoding="utf-8")
print("wrote", OUT)
