"""Chat SFT: supervised fine-tuning of a decoder on conversations, loss on assistant tokens only.

The body IS the model (our pretrained GPT, or a GPT-2/LLaMA imported through ``finetune.init_from``).
A conversation is rendered by the tokenizer's chat template (``Tok.render_chat``: ChatML, Llama-3,
Zephyr or plain-text headers); labels are the ids shifted by one with -100 wherever the template's
loss mask is 0, so system/user turns and role headers teach nothing and every assistant reply (and
its end-of-turn marker) is learned. When the template adds marker tokens, the token embedding (and
the tied head) grow to the new vocabulary, new rows starting at the mean embedding.

Data, by what the path names (``finetune.data.*``, ``lmforge evaluate --data``; read by ``chat_files``):

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
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from ..config import StrictModel
from ..errors import ConfigError, InputError
from ..models.packing import pack_rows, packed_logits, resize_token_embeddings
from .base import Task, WarningCounter, pad_batch, register, require_examples
from .chat_files import _char_spaced, _content, _is_record, read_raw

ROLE_NAMES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant"}
TOOL_ROLES = {"function_call": "assistant", "tool_call": "assistant", "observation": "user", "tool": "user",
              "function": "user"}
_PLACEHOLDER_RE = re.compile(r"\{\{\s*\w+\s*\}\}")


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
        if all("teacher_ids" in f for f in features):  # distillation: the teacher's top-k (tasks/distill.py)
            from .distill import topk_rows

            # listed as the (packed) rows hold the conversations, so each row follows its tokens
            batch.update(topk_rows([features[i] for row in rows for i in row]))
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
        from .distill import sequence_kd

        logits = self._logits(model, batch).float()
        labels = batch["labels"]
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100,
                               reduction="sum")
        count = int((labels != -100).sum())
        return sequence_kd(self, logits, batch, loss, count, model.training), count

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
