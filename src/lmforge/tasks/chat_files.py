"""Reading chat data: OpenAI ``messages``, Alpaca, ShareGPT and dialogue files (ChatterBot YAML,
CDial-GPT JSON, ``post<TAB>response`` lines), with ``PATH#KEY[a:b]`` selectors.

``read_raw`` returns ``(where, record)`` pairs, ``where`` being ``file:line`` (or ``file#key[i]``) for
error messages; turning a record into a conversation is the task's job (``tasks.chat.Chat``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..text.scripts import cjk_count

CHAT_SUFFIXES = (".jsonl", ".ndjson", ".json", ".yml", ".yaml", ".tsv", ".txt")
_SELECT_RE = re.compile(r"^(?P<path>.+?)#(?P<key>[^\[\]#]*)(?:\[(?P<a>-?\d*):(?P<b>-?\d*)\])?$")

def split_selector(path: str | Path) -> tuple[str, str | None, slice | None]:
    """``"F.json#train[:500]"`` -> ("F.json", "train", slice(None, 500)); a plain path -> (path, None, None)."""
    s = str(path)
    m = _SELECT_RE.match(s)
    if m is None or Path(s).exists():
        return s, None, None
    a, b = m.group("a"), m.group("b")
    sl = None
    if m.group("a") is not None:
        sl = slice(int(a) if a not in ("", "-") else None, int(b) if b not in ("", "-") else None)
    return m.group("path"), (m.group("key") or None), sl


def _json_array(text: str, path: str) -> list[tuple[int, Any]]:
    """Elements of a top-level JSON array with the line each one starts on (for file:line errors)."""
    dec = json.JSONDecoder()
    i = text.index("[") + 1
    out: list[tuple[int, Any]] = []
    n = len(text)
    line, pos = 1, 0
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n:
            raise InputError(f"{path}: the JSON array is not closed", "fix the file (a ']' is missing)")
        if text[i] == "]":
            return out
        line += text.count("\n", pos, i)
        pos = i
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{text.count(chr(10), 0, err.pos) + 1}: invalid JSON ({err.msg})",
                             "fix the record (a JSON list of objects)") from None
        out.append((line, obj))


def _read_json(p: Path, key: str | None) -> list[tuple[str, Any]]:
    text = p.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if not stripped:
        return []
    if stripped.startswith("["):
        if key:
            raise InputError(f"{p}#{key}: the file is a JSON list, it has no key '{key}'",
                             f"use {p} (or {p}#[a:b] for a slice)")
        return [(f"{p}:{line}", rec) for line, rec in _json_array(text, str(p))]
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # JSON lines in a .json file
            return _read_jsonl(p)
        raise InputError(f"{p}:{err.lineno}: invalid JSON ({err.msg})", "fix the file") from None
    if isinstance(obj, dict) and key is None and not _is_record(obj):
        splits = [k for k, v in obj.items() if isinstance(v, list)]
        raise InputError(f"{p}: a JSON object of splits ({', '.join(splits) or 'no lists'})",
                         f"pick one with {p}#KEY, e.g. {p}#{splits[0] if splits else 'train'}")
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            have = ", ".join(k for k in obj) if isinstance(obj, dict) else "none"
            raise InputError(f"{p}#{key}: no key '{key}' (keys: {have})", "use one of the file's keys after '#'")
        obj = obj[key]
    rows = obj if isinstance(obj, list) else [obj]
    where = f"{p}#{key}" if key else str(p)
    return [(f"{where}[{i}]", rec) for i, rec in enumerate(rows)]


def _read_jsonl(p: Path) -> list[tuple[str, Any]]:
    out = []
    with open(p, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append((f"{p}:{n}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise InputError(f"{p}:{n}: invalid JSON ({err.msg})", "one JSON object per line") from None
    return out


def _read_yaml(p: Path) -> list[tuple[str, Any]]:
    """ChatterBot corpus files: ``conversations:`` lists of utterances, with their line numbers."""
    import yaml

    text = p.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"{p}:{mark.line + 1 if mark else '?'}: invalid YAML ({getattr(err, 'problem', err)})",
                         "fix the file") from None
    if root is None:
        return []
    data = yaml.safe_load(text)
    convs = data.get("conversations") if isinstance(data, dict) else data
    if not isinstance(convs, list):
        raise InputError(f"{p}: no 'conversations' list", "a ChatterBot file: conversations: [[utterance, reply], ...]")
    nodes = root.value if isinstance(root, yaml.SequenceNode) else next(
        (v.value for k, v in root.value if getattr(k, "value", None) == "conversations"), [])
    lines = [n.start_mark.line + 1 for n in nodes] if len(nodes) == len(convs) else [None] * len(convs)
    return [(f"{p}:{ln}" if ln else f"{p}[{i}]", c) for i, (ln, c) in enumerate(zip(lines, convs))]


def _read_pairs(p: Path) -> list[tuple[str, Any]]:
    out = []
    with open(p, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                raise InputError(f"{p}:{n}: expected utterances separated by tabs (post<TAB>response), got one field",
                                 "use a tab between the turns, or a jsonl file of messages")
            out.append((f"{p}:{n}", parts))
    return out


def read_raw(path: str | Path) -> list[tuple[str, Any]]:
    """(where, record) pairs of a chat file, a directory of them, or a ``#KEY[a:b]`` selection."""
    file, key, sl = split_selector(path)
    p = Path(file)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(CHAT_SUFFIXES))
        if not files:
            raise InputError(f"directory {p} holds no chat files ({', '.join(CHAT_SUFFIXES)})", "pass a file")
    elif p.is_file():
        files = [p]
    else:
        raise InputError(f"file not found: {file}", "check finetune.data.* / --data")
    rows: list[tuple[str, Any]] = []
    for f in files:
        name = f.name.lower()
        if name.endswith(".json"):
            rows += _read_json(f, key)
        elif name.endswith((".jsonl", ".ndjson")):
            rows += _read_jsonl(f)
        elif name.endswith((".yml", ".yaml")):
            rows += _read_yaml(f)
        elif name.endswith((".tsv", ".txt")):
            rows += _read_pairs(f)
        else:
            raise InputError(f"{f}: unsupported file type", f"use one of {', '.join(CHAT_SUFFIXES)}")
        if key is not None and not name.endswith(".json"):
            raise InputError(f"{path}: '#{key}' selects a key of a JSON object; {f.name} is not JSON",
                             "drop the key (a slice #[a:b] works for any file)")
    return rows[sl] if sl is not None else rows


def _is_record(obj: dict) -> bool:
    return any(k in obj for k in ("messages", "conversations", "instruction"))


def _content(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI multi-part content: keep the text parts
        parts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in value]
        return "".join(parts)
    raise InputError(f"{where}: message content must be text, got {type(value).__name__}", "give a string")


def _char_spaced(texts: list[str]) -> bool:
    """CDial-GPT style '你 好 啊 ！': nearly every space-separated piece is a single character."""
    pieces = [w for t in texts for w in t.split(" ") if w]
    if len(pieces) < 3 or not any(cjk_count(t) for t in texts):
        return False
    return sum(len(w) == 1 for w in pieces) >= 0.9 * len(pieces)
