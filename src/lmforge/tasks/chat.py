"""Chat SFT: supervised fine-tuning of a decoder on conversations, loss on assistant tokens only.

The body IS the model (our pretrained GPT, or a GPT-2/LLaMA imported through ``finetune.init_from``).
A conversation is rendered by the tokenizer's chat template (``Tok.render_chat``: ChatML, Llama-3,
Zephyr or plain-text headers); labels are the ids shifted by one with -100 wherever the template's
loss mask is 0, so system/user turns and role headers teach nothing and every assistant reply (and
its end-of-turn marker) is learned. When the template adds marker tokens, the token embedding (and
the tied head) grow to the new vocabulary, new rows starting at the mean embedding.

Data, by what the path names (``finetune.data.*``, ``lmforge evaluate --data``):

* OpenAI ``messages`` (jsonl, or a JSON list): ``{"messages": [{"role": "user", "content": ...}, ...]}``;
* Alpaca: ``instruction`` / ``input`` / ``output`` (optional ``system``, ``history`` of [user, reply]);
* ShareGPT: ``conversations`` of ``{"from": "human"|"gpt"|"system", "value": ...}`` (optional ``system``,
  ``tools``); tool turns (``function_call``/``observation``) are skipped or mapped (``tool_turns``);
* dialogues: a list of utterances (alternating user/assistant): ChatterBot YAML (``conversations:``),
  CDial-GPT JSON (``{"train": [[...], ...], ...}``), or ``post<TAB>response`` lines in .tsv/.txt;
* a directory: every such file in it, sorted (e.g. chatterbot_corpus/english).

``PATH#KEY`` picks a split of a JSON object (``toy_data.json#test``), ``PATH#[a:b]`` a slice of the
records (``alpaca_en_demo.json#[900:]``), both together ``toy_data.json#train[:500]``; so a recipe
can hold out a test set without a hand-made file. Formats are detected per record by their keys
unless ``format`` says which.

Packing (``packing: true``) puts several conversations into one row of at most ``max_len`` tokens;
a block-diagonal causal mask and positions restarting at 0 keep them apart, so a packed row has
exactly the loss of its conversations one by one (tested).
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from ..config import StrictModel
from ..errors import ConfigError, InputError
from .base import Task, WarningCounter, pad_batch, register, require_examples

CHAT_SUFFIXES = (".jsonl", ".ndjson", ".json", ".yml", ".yaml", ".tsv", ".txt")
ROLE_NAMES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant"}
TOOL_ROLES = {"function_call": "assistant", "tool_call": "assistant", "observation": "user", "tool": "user",
              "function": "user"}
_SELECT_RE = re.compile(r"^(?P<path>.+?)#(?P<key>[^\[\]#]*)(?:\[(?P<a>-?\d*):(?P<b>-?\d*)\])?$")
_PLACEHOLDER_RE = re.compile(r"\{\{\s*\w+\s*\}\}")
_CJK_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class ChatConfig(StrictModel):
    kind: Literal["chat"] = "chat"
    format: Literal["auto", "messages", "alpaca", "sharegpt", "dialogue"] = Field(
        "auto", description="record layout; auto = by each record's keys")
    template: Literal["auto", "chatml", "plain", "llama3", "zephyr"] = Field(
        "auto", description="chat template; auto = the tokenizer's own (chat_template.json, a Hugging Face "
        "chat_template or its markers), else ChatML (its markers are added as special tokens)")
    system: str | None = Field(None, description="system message for conversations that have none")
    max_len: int = Field(256, ge=8, description="tokens per training row (<= the model's block_size); longer "
                         "conversations keep whole turns from the start (counted warning)")
    packing: bool = Field(False, description="several conversations per row, without attention across them")
    tool_turns: Literal["skip", "map"] = Field(
        "skip", description="ShareGPT function_call/observation turns: skip the conversation (counted warning) "
        "or map them to assistant/user turns (tool schemas go into the system message)")
    placeholders: dict[str, str] = Field(default_factory=dict, description="{{name}} -> value in every message, "
                                         "e.g. {name: Forge, author: lmforge} for identity.json")
    join_chars: Literal["auto", "always", "never"] = Field(
        "auto", description="remove the spaces of character-tokenized Chinese (CDial-GPT: '你 好 啊'); auto = "
        "when nearly every space-separated piece is one character and the text has CJK")
    generate: bool = Field(True, description="predict/evaluate: generate a reply to each conversation's last "
                           "user turn (and score it with chrF against the reference)")
    eval_generate: bool = Field(False, description="also generate during training's evaluations (slow)")
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0, description="0 = greedy (reproducible evaluation)")
    top_k: int | None = Field(40, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float = Field(1.1, ge=1)
    seed: int = 0


# -------------------------------------------------------------------------------------------------
# Reading


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
    if len(pieces) < 3 or not any(_CJK_RE.search(t) for t in texts):
        return False
    return sum(len(w) == 1 for w in pieces) >= 0.9 * len(pieces)


# -------------------------------------------------------------------------------------------------
# The model side: resizing the vocabulary, packed rows


def resize_token_embeddings(model: nn.Module, vocab_size: int, new_ids: list[int] = ()) -> None:
    """Grow a GPT's token embedding (and lm_head, tied or not) to ``vocab_size`` rows; new rows and
    ``new_ids`` (markers that landed in unused rows of a padded vocabulary) start at the mean row,
    so a new marker begins as an "average token" rather than noise. Updates ``config.vocab_size``
    so ``load_model`` rebuilds the right shape."""
    wte = model.wte
    V, d = wte.weight.shape
    tied = model.lm_head.weight is wte.weight
    old_new = [i for i in new_ids if i < V]
    if vocab_size > V:
        with torch.no_grad():
            emb = nn.Embedding(vocab_size, d).to(device=wte.weight.device, dtype=wte.weight.dtype)
            emb.weight[:V] = wte.weight
            emb.weight[V:] = wte.weight.mean(0)
            model.wte = emb
            if tied:
                model.lm_head = nn.Linear(d, vocab_size, bias=False).to(emb.weight.device)
                model.lm_head.weight = model.wte.weight
            else:
                old = model.lm_head.weight
                head = nn.Linear(d, vocab_size, bias=False).to(device=old.device, dtype=old.dtype)
                head.weight[:V] = old
                head.weight[V:] = old.mean(0)
                model.lm_head = head
        model.config.vocab_size = vocab_size
    if old_new:
        with torch.no_grad():
            keep = torch.ones(V, dtype=torch.bool)
            keep[old_new] = False
            model.wte.weight[old_new] = model.wte.weight[:V][keep].mean(0)
            if not tied:
                model.lm_head.weight[old_new] = model.lm_head.weight[:V][keep].mean(0)


def packed_logits(model: nn.Module, idx: torch.Tensor, segment_ids: torch.Tensor,
                  position_ids: torch.Tensor) -> torch.Tensor:
    """Logits of packed rows: each token attends only to earlier tokens of its own segment, and
    positions restart at 0 per segment (learned or RoPE), so a conversation scores as it would alone.

    GPT.hidden_states takes a 2-D padding mask only, so this runs the same modules with a (B, 1, T, T)
    block-diagonal causal mask and per-row positions, both of which Block/Attention accept."""
    m = getattr(model, "module", model)
    m = getattr(m, "_orig_mod", m)
    T = idx.shape[1]
    if T > m.config.block_size:
        raise ValueError(f"packed row of {T} tokens exceeds block_size {m.config.block_size}")
    causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
    mask = ((segment_ids[:, :, None] == segment_ids[:, None, :]) & causal)[:, None]  # (B, 1, T, T)
    x = m.wte(idx)
    if m.wpe is not None:
        x = x + m.wpe(position_ids)
    x = m.drop(x)
    positions = None if m.wpe is not None else position_ids
    for i, block in enumerate(m.blocks):
        if m.gradient_checkpointing and m.training:
            x = torch.utils.checkpoint.checkpoint(block, x, None, i, mask, positions, use_reentrant=False)
        else:
            x = block(x, None, i, mask, positions)
    return m.lm_head(m.ln_f(x))


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: indices grouped into rows of at most ``capacity`` tokens (deterministic)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


# -------------------------------------------------------------------------------------------------
# The task


@register
class Chat(Task):
    kind = "chat"
    headline = ("loss", "perplexity")
    higher_is_better = False

    def __init__(self, cfg: ChatConfig, state: dict | None = None):
        super().__init__(cfg, state)
        self.warnings = WarningCounter()
        self._in_training = False  # set by fit(): no generation during training's evaluations
        self._new_ids: list[int] = []

    # -- data ---------------------------------------------------------------------------------
    def read(self, path) -> list[dict]:
        rows = read_raw(path)
        if not rows:
            require_examples([], path)
        out = []
        for where, rec in rows:
            messages = self.conversation(rec, where)
            if messages is not None:
                out.append({"id": where.rsplit("/", 1)[-1], "messages": messages})
        if not out:
            raise InputError(f"{path}: none of the {len(rows)} conversations is usable ({'; '.join(self.warnings.lines())})",
                             "each conversation needs at least one assistant reply")
        return out

    def conversation(self, rec: Any, where: str, need_reply: bool = True) -> list[dict] | None:
        """Messages [{role, content}] of one record in any supported layout; None = skipped (counted)."""
        fmt = self.cfg.format
        if fmt == "auto":
            if isinstance(rec, (list, str)):  # a bare string: a dialogue of one utterance (no reply)
                fmt = "dialogue"
            elif isinstance(rec, dict) and "messages" in rec:
                fmt = "messages"
            elif isinstance(rec, dict) and "conversations" in rec:
                fmt = "sharegpt"
            elif isinstance(rec, dict) and "instruction" in rec:
                fmt = "alpaca"
            else:
                keys = ", ".join(sorted(rec)) if isinstance(rec, dict) else type(rec).__name__
                raise InputError(f"{where}: not a chat record ({keys})",
                                 "use OpenAI 'messages', Alpaca 'instruction'/'output', ShareGPT 'conversations' "
                                 "or a list of utterances; or set finetune.task.format")
        system = rec.get("system") if isinstance(rec, dict) else None
        tools = None
        if fmt == "dialogue":
            turns = rec.get("dialogue", rec.get("utterances")) if isinstance(rec, dict) else rec
            turns = [turns] if isinstance(turns, str) else turns
            if not isinstance(turns, list) or not all(isinstance(t, (str, int, float)) for t in turns):
                raise InputError(f"{where}: a dialogue must be a list of utterances (strings)",
                                 "e.g. [\"Hello\", \"Hi there\"], or set finetune.task.format")
            msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": str(t)} for i, t in enumerate(turns)]
        elif fmt == "alpaca":
            if not isinstance(rec, dict) or "instruction" not in rec:
                raise InputError(f"{where}: no 'instruction' field (an Alpaca record)", "set finetune.task.format")
            msgs = []
            for h in rec.get("history") or []:
                if not isinstance(h, (list, tuple)) or len(h) != 2:
                    raise InputError(f"{where}: history entries must be [user, reply] pairs", "fix the record")
                msgs += [{"role": "user", "content": _content(h[0], where)},
                         {"role": "assistant", "content": _content(h[1], where)}]
            prompt = "\n".join(s for s in (_content(rec.get("instruction"), where), _content(rec.get("input"), where))
                               if s.strip())
            msgs.append({"role": "user", "content": prompt})
            if rec.get("output") is not None:
                msgs.append({"role": "assistant", "content": _content(rec.get("output"), where)})
        else:
            key, role_key, text_key = (("messages", "role", "content") if fmt == "messages"
                                       else ("conversations", "from", "value"))
            if not isinstance(rec, dict) or not isinstance(rec.get(key), list):
                raise InputError(f"{where}: no '{key}' list", "set finetune.task.format to the file's layout")
            msgs = []
            for j, m in enumerate(rec[key]):
                if not isinstance(m, dict):
                    raise InputError(f"{where}: {key}[{j}] is not an object", f"each turn needs '{role_key}'")
                role = m.get(role_key, m.get("role", m.get("from")))
                text = m.get(text_key, m.get("content", m.get("value")))
                if role in TOOL_ROLES or (role == "assistant" and m.get("tool_calls")):
                    if self.cfg.tool_turns == "skip":
                        self.warnings.add("conversation with tool turns skipped (finetune.task.tool_turns: map "
                                          "keeps them)", where)
                        return None
                    if role == "assistant":
                        text = json.dumps(m["tool_calls"], ensure_ascii=False)
                    msgs.append({"role": TOOL_ROLES.get(role, "assistant"),
                                 "content": ("Observation: " if TOOL_ROLES.get(role) == "user" else "")
                                 + _content(text, where)})
                    continue
                if role not in ROLE_NAMES:
                    raise InputError(f"{where}: {key}[{j}] has role {role!r}, not system/user/assistant "
                                     "(or ShareGPT's human/gpt)", "rename the role in the data")
                msgs.append({"role": ROLE_NAMES[role], "content": _content(text, where)})
            tools = rec.get("tools") if self.cfg.tool_turns == "map" else None
        return self._finish(msgs, system, tools, where, need_reply)

    def _finish(self, msgs: list[dict], system, tools, where: str, need_reply: bool) -> list[dict] | None:
        system_msgs = [m for m in msgs if m["role"] == "system"]
        msgs = [m for m in msgs if m["role"] != "system"]
        parts = ([_content(system, where)] if system else []) + [m["content"] for m in system_msgs]
        sys_text = "\n".join(p for p in parts if p.strip())
        if tools and tools not in ("[]", []):
            tools_text = tools if isinstance(tools, str) else json.dumps(tools, ensure_ascii=False)
            sys_text = (sys_text + "\n" if sys_text else "") + "Tools: " + tools_text
        if not sys_text and self.cfg.system:
            sys_text = self.cfg.system
        texts = [m["content"] for m in msgs] + ([sys_text] if sys_text else [])
        join = self.cfg.join_chars == "always" or (self.cfg.join_chars == "auto" and _char_spaced(texts))
        ph = self.cfg.placeholders

        def clean(t: str) -> str:
            if join:
                t = "".join(t.split(" "))
            for k, v in ph.items():
                t = re.sub(r"\{\{\s*" + re.escape(k) + r"\s*\}\}", v, t)
            return t

        msgs = [{"role": m["role"], "content": clean(m["content"])} for m in msgs]
        sys_text = clean(sys_text) if sys_text else ""
        if any(_PLACEHOLDER_RE.search(m["content"]) for m in msgs):
            self.warnings.add("unfilled {{placeholder}} kept as text (set finetune.task.placeholders)", where)
        if need_reply:
            last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
            if last is None:
                self.warnings.add("conversation without an assistant turn skipped", where)
                return None
            if last < len(msgs) - 1:
                self.warnings.add("turns after the last assistant reply dropped (nothing to learn)", where)
                msgs = msgs[: last + 1]
        return ([{"role": "system", "content": sys_text}] if sys_text else []) + msgs

    def fit(self, examples: list[dict]) -> None:
        self._in_training = True

    def example(self, value, i: int = 0) -> dict:
        """A text is one user message; a dict is a record in any supported layout (the reply optional)."""
        if isinstance(value, dict) and (_is_record(value) or "dialogue" in value):
            msgs = self.conversation(value, f"input {i}", need_reply=False)
        elif isinstance(value, list):
            msgs = self.conversation(value, f"input {i}", need_reply=False)
        else:
            text = value.get("text", "") if isinstance(value, dict) else str(value)
            msgs = self._finish([{"role": "user", "content": str(text)}], None, None, f"input {i}", False)
        rid = value.get("id", i) if isinstance(value, dict) else i
        return {"id": str(rid), "messages": msgs or []}

    def prepare_tokenizer(self, tok):
        """The tokenizer with the configured template; ChatML/Llama-3/Zephyr markers become special tokens
        (``build_model`` then grows the embedding to the new vocabulary)."""
        from ..tokenizer.chat import TEMPLATES, add_chat_tokens, plain, zephyr

        name = self.cfg.template
        if name == "auto":
            own = getattr(tok, "_chat_template", None)
            try:
                current = tok.chat_template
            except ConfigError:
                current = None
            if own is not None or (current is not None and current.name != "plain"):
                out = copy.copy(tok)  # the caller's tokenizer stays as it was
                out.chat_template = current  # saved with the model as chat_template.json
                return out
            name = "chatml"
        roles = tok.meta.get("roles", {})
        if name == "plain":
            eos = roles.get("eos") or roles.get("sep")
            if not eos:
                raise ConfigError(f"template plain needs an eos token; {tok!r} has none",
                                  "use finetune.task.template: chatml (adds its markers)")
            out = copy.copy(tok)
            out.chat_template = plain(eos)
            return out
        template = zephyr(roles.get("eos") or "</s>") if name == "zephyr" else TEMPLATES[name]()
        out = add_chat_tokens(tok, template)
        self._new_ids = [out.token_to_id(m) for m in template.special_tokens
                         if tok.token_to_id(m) is None and out.token_to_id(m) is not None]
        return out

    def _max_len(self) -> int:
        block = self.state.get("block_size")
        return min(self.cfg.max_len, block) if block else self.cfg.max_len

    def encode(self, example: dict, tok) -> dict:
        msgs = example["messages"]
        max_len = self._max_len()
        where = example["id"]
        r = tok.render_chat(msgs, max_length=max_len + 1)
        ids, mask = list(r.ids), list(r.loss_mask)
        if r.truncated:
            if r.turns_kept == 0:
                ids, mask = self._cut_first_exchange(msgs, tok, max_len + 1)
                self.warnings.add(f"first exchange longer than max_len={max_len}: the prompt's start (and the "
                                  "reply's end) cut", where)
            else:
                self.warnings.add(f"conversation longer than max_len={max_len} tokens: whole turns kept from "
                                  "the start", where)
        if len(ids) < 2:  # nothing to predict (an empty conversation at inference)
            ids, mask = (ids * 2 or [tok.pad_id or 0] * 2)[:2], [0, 0]
        labels = [t if m else -100 for t, m in zip(ids[1:], mask[1:])]
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        context = msgs[:last] if last is not None else msgs
        budget = max(max_len - self.cfg.max_new_tokens, max_len // 2)
        try:
            prompt = tok.chat_prompt(context, max_length=budget)
        except InputError:
            prompt = tok.chat_prompt(context)[-budget:]
            self.warnings.add(f"last user message longer than the prompt budget ({budget} tokens): its start cut", where)
        return {"input_ids": ids[:-1], "labels": labels, "prompt": prompt}

    def _cut_first_exchange(self, msgs: list[dict], tok, limit: int) -> tuple[list[int], list[int]]:
        """Over-long first exchange: keep the end of its prompt (at most half the row) and the reply's
        start, so the row still trains on a reply instead of on nothing."""
        first = next((i for i, m in enumerate(msgs) if m["role"] == "assistant"), len(msgs) - 1)
        ids, mask = tok.render_chat(msgs[: first + 1])
        start = mask.index(1) if 1 in mask else len(ids)
        keep = min(start, max(limit // 2, limit - (len(ids) - start)))
        ids, mask = ids[start - keep:], mask[start - keep:]
        return ids[:limit], mask[:limit]

    def length(self, features: dict) -> int:
        return len(features["input_ids"])

    def collate(self, features: list[dict], tok) -> dict[str, torch.Tensor]:
        pad = tok.pad_id if tok.pad_id is not None else (tok.eos_id or 0)
        if self.cfg.packing:
            rows = pack_rows([len(f["input_ids"]) for f in features], self._max_len())
        else:
            rows = [[i] for i in range(len(features))]
        ids, labels, owner, seg, pos = [], [], [], [], []
        for row in rows:
            r_ids, r_lab, r_own, r_seg, r_pos = [], [], [], [], []
            for s, i in enumerate(row, 1):
                n = len(features[i]["input_ids"])
                r_ids += features[i]["input_ids"]
                r_lab += features[i]["labels"]
                r_own += [i] * n
                r_seg += [s] * n
                r_pos += list(range(n))
            ids.append(r_ids), labels.append(r_lab), owner.append(r_own), seg.append(r_seg), pos.append(r_pos)
        batch = {"input_ids": pad_batch(ids, pad), "labels": pad_batch(labels, -100),
                 "example_index": pad_batch(owner, -1)}
        if self.cfg.packing:
            batch["segment_ids"] = pad_batch(seg, 0)
            batch["position_ids"] = pad_batch(pos, 0)
        return batch

    # -- model --------------------------------------------------------------------------------
    def build_model(self, body, tok) -> nn.Module:
        from ..models.gpt import GPT

        if not isinstance(body, GPT):
            raise ConfigError(f"task chat fine-tunes a decoder; the body is a {type(body).__name__}",
                              "pretrain with objective clm, or set finetune.init_from to a GPT-2/LLaMA directory")
        block = body.config.block_size
        if self.cfg.max_len > block:
            raise ConfigError(f"finetune.task.max_len={self.cfg.max_len} exceeds the model's context "
                              f"(block_size {block})", f"set finetune.task.max_len to at most {block}")
        resize_token_embeddings(body, max(tok.vocab_size, body.config.vocab_size), self._new_ids)
        self.state.update(block_size=block, template=tok.chat_template.name, vocab_size=body.config.vocab_size)
        return body

    def _logits(self, model, batch) -> torch.Tensor:
        if "segment_ids" in batch:
            return packed_logits(model, batch["input_ids"], batch["segment_ids"], batch["position_ids"])
        return model(batch["input_ids"])[0]

    def loss(self, model, batch):
        logits = self._logits(model, batch).float()
        labels = batch["labels"]
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100,
                               reduction="sum")
        return loss, int((labels != -100).sum())

    def count(self, batch) -> int:
        return int((batch["labels"] != -100).sum())

    def tokens(self, batch) -> int:
        return int((batch["example_index"] >= 0).sum())

    def sampling(self, tok):
        """The sampler settings for replies: stop at the template's end marker (or any other stop id)."""
        from ..models.generate import SamplingConfig

        stop_ids = tok.chat_stop_ids
        stops = list(dict.fromkeys(tok.chat_stop_strings + [tok.decode([i]) for i in stop_ids[1:]]))
        return SamplingConfig(max_new_tokens=self.cfg.max_new_tokens, temperature=self.cfg.temperature,
                              top_k=self.cfg.top_k, top_p=self.cfg.top_p,
                              repetition_penalty=self.cfg.repetition_penalty, stop=stops,
                              eos_token_id=stop_ids[0] if stop_ids else None, seed=self.cfg.seed)

    @torch.no_grad()
    def predict(self, model, batch, tok, features) -> list[dict]:
        from ..models.generate import generate_batch, truncate_at_stop

        logits = self._logits(model, batch).float()
        labels = batch["labels"]
        nll = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100,
                              reduction="none")
        owner = batch["example_index"].reshape(-1)
        scored = (labels.reshape(-1) != -100) & (owner >= 0)
        sums = torch.zeros(len(features), dtype=torch.float64, device=nll.device)
        counts = torch.zeros(len(features), dtype=torch.long, device=nll.device)
        sums.index_add_(0, owner[scored], nll[scored].double())
        counts.index_add_(0, owner[scored], torch.ones_like(owner[scored]))
        # nll/tokens: the reference reply's summed loss (raw inputs without a reply have none)
        out = [{"nll": round(float(s), 6), "tokens": int(c)} if c else {} for s, c in zip(sums.tolist(), counts.tolist())]
        if self.cfg.generate and (not self._in_training or self.cfg.eval_generate):
            cfg = self.sampling(tok)
            pad = tok.pad_id if tok.pad_id is not None else 0
            new = generate_batch(model, [f["prompt"] for f in features], cfg, pad_id=pad, decode=tok.decode)
            for o, ids in zip(out, new):
                o["reply"] = truncate_at_stop(tok.decode(ids), cfg.stop).strip()
        return out

    # -- scoring ------------------------------------------------------------------------------
    def metrics(self, predictions: list[dict], examples: list[dict]) -> dict:
        nll = sum(p.get("nll", 0.0) for p in predictions)
        n = sum(p.get("tokens", 0) for p in predictions)
        loss = nll / n if n else float("nan")
        out = {"loss": loss, "perplexity": math.exp(min(loss, 50)) if n else float("nan"),
               "target_tokens": n, "examples": len(examples)}
        pairs = [(p["reply"], r) for p, e in zip(predictions, examples)
                 if "reply" in p and (r := self.reference(e)) is not None]
        if pairs:
            from ..eval.textmetrics import chrf, length_stats

            hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
            out["chrf"] = chrf(hyps, refs)["chrf"]
            out["reply_lengths"] = length_stats(hyps, refs)
        return out

    def subset_scores(self, predictions, examples, index_sets):
        """Loss is corpus-level (summed nll over summed tokens): resample the per-example sums."""
        nll = np.array([p.get("nll", 0.0) for p in predictions], dtype=float)
        n = np.array([p.get("tokens", 0) for p in predictions], dtype=float)
        out = {"loss": [], "perplexity": []}
        for idx in index_sets:
            tot = n[idx].sum()
            loss = float(nll[idx].sum() / tot) if tot else float("nan")
            out["loss"].append(loss)
            out["perplexity"].append(math.exp(min(loss, 50)))
        return out

    def reference(self, example: dict):
        replies = [m["content"] for m in example.get("messages", []) if m["role"] == "assistant"]
        return replies[-1] if replies else None

    def example_errors(self, prediction: dict, example: dict) -> dict | None:
        """An empty generated reply (the model ended its turn at once) is the failure worth listing."""
        if "reply" not in prediction or prediction["reply"].strip():
            return None
        users = [m["content"] for m in example.get("messages", []) if m["role"] == "user"]
        return {"id": example["id"], "user": users[-1] if users else "", "reference": self.reference(example),
                "reply": prediction["reply"], "nll": prediction.get("nll"), "tokens": prediction.get("tokens", 0)}


CONFIG = ChatConfig
