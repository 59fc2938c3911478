"""Chat templates as data, and rendering a conversation to ``(ids, loss_mask)`` in one place.

A template is a small declarative record (saved as ``chat_template.json`` beside ``tokenizer.json``),
never code: each role has a ``prefix`` and a ``suffix`` around its content, ``eos`` is the end-of-turn
marker the model learns to emit (the assistant suffix starts with it), ``generation_prefix`` opens the
assistant turn at inference. ChatML::

    {"name": "chatml", "bos": "",
     "roles": {"system": {"prefix": "<|im_start|>system\\n", "suffix": "<|im_end|>\\n"},
               "user": {"prefix": "<|im_start|>user\\n", "suffix": "<|im_end|>\\n"},
               "assistant": {"prefix": "<|im_start|>assistant\\n", "suffix": "<|im_end|>\\n"}},
     "generation_prefix": "<|im_start|>assistant\\n", "eos": "<|im_end|>",
     "special_tokens": ["<|im_start|>", "<|im_end|>"], "stop_strings": ["<|im_end|>"]}

Rendering encodes every piece on its own (markers, role headers, contents) and concatenates the ids,
so the loss mask is exact: 1 on assistant content and on the assistant's ``eos``, 0 elsewhere.
Hugging Face Jinja ``chat_template`` strings are never executed: ChatML, Llama-3 and Zephyr templates
are recognised by their markers and mapped to this form (``from_hf_chat_template``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from ..errors import ConfigError, InputError

if TYPE_CHECKING:  # tok.py imports this module; the reverse import is for type hints only
    from .tok import Tok

log = logging.getLogger(__name__)

CHAT_TEMPLATE_FILE = "chat_template.json"
HF_CONFIG_FILE = "tokenizer_config.json"


@dataclass(frozen=True)
class Turn:
    """What surrounds one role's content."""

    prefix: str
    suffix: str


@dataclass
class ChatTemplate:
    """A chat format as data. ``special_tokens`` are the markers that must be single special tokens."""

    name: str
    roles: dict[str, Turn]
    eos: str
    generation_prefix: str | None = None
    bos: str = ""
    special_tokens: list[str] = field(default_factory=list)
    stop_strings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        where = f"chat template {self.name!r}"
        if "assistant" not in self.roles:
            raise ConfigError(f"{where}: roles has no 'assistant'", "add roles.assistant with a prefix and suffix")
        if not self.eos:
            raise ConfigError(f"{where}: eos is empty", "set eos to the end-of-turn marker the model should learn")
        if not self.roles["assistant"].suffix.startswith(self.eos):
            raise ConfigError(f"{where}: roles.assistant.suffix {self.roles['assistant'].suffix!r} does not start "
                              f"with eos {self.eos!r}", "the assistant turn must end with the eos marker")
        if self.generation_prefix is None:
            self.generation_prefix = self.roles["assistant"].prefix
        if not self.stop_strings:
            self.stop_strings = [self.eos]

    # -- persistence ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bos": self.bos,
                "roles": {r: {"prefix": t.prefix, "suffix": t.suffix} for r, t in self.roles.items()},
                "generation_prefix": self.generation_prefix, "eos": self.eos,
                "special_tokens": list(self.special_tokens), "stop_strings": list(self.stop_strings)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "chat template") -> "ChatTemplate":
        """Validate a JSON record; errors name ``source`` and the key."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: expected a JSON object, got {type(d).__name__}", "see lmforge.tokenizer.chat")
        known = {"name", "bos", "roles", "generation_prefix", "eos", "special_tokens", "stop_strings"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown}", f"allowed keys: {sorted(known)}")
        roles = d.get("roles")
        if not isinstance(roles, Mapping) or not roles:
            raise ConfigError(f"{source}: 'roles' must map role names to {{prefix, suffix}}",
                              'e.g. "roles": {"user": {"prefix": "### User:\\n", "suffix": "\\n\\n"}, ...}')
        turns = {}
        for role, spec in roles.items():
            if not isinstance(spec, Mapping) or not all(isinstance(spec.get(k, ""), str) for k in ("prefix", "suffix")):
                raise ConfigError(f"{source}: roles.{role} must be an object with string 'prefix' and 'suffix'",
                                  "use empty strings for parts a role does not have")
            turns[role] = Turn(spec.get("prefix", ""), spec.get("suffix", ""))
        for key in ("eos", "bos", "generation_prefix", "name"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise ConfigError(f"{source}: '{key}' must be a string", "quote it in the JSON file")
        if not d.get("eos"):
            raise ConfigError(f"{source}: 'eos' is missing", "set it to the end-of-turn marker, e.g. \"<|im_end|>\"")
        for key in ("special_tokens", "stop_strings"):
            v = d.get(key, [])
            if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
                raise ConfigError(f"{source}: '{key}' must be a list of non-empty strings", "e.g. [\"<|im_end|>\"]")
        return cls(name=d.get("name") or "custom", roles=turns, eos=d["eos"], generation_prefix=d.get("generation_prefix"),
                   bos=d.get("bos") or "", special_tokens=list(d.get("special_tokens", [])),
                   stop_strings=list(d.get("stop_strings", [])))

    def save(self, path: str | Path) -> Path:
        from ..runs import atomic_write_json

        path = Path(path)
        file = path / CHAT_TEMPLATE_FILE if path.suffix != ".json" else path
        atomic_write_json(file, self.to_dict())
        return file

    @classmethod
    def load(cls, file: str | Path) -> "ChatTemplate":
        file = Path(file)
        try:
            d = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise InputError(f"{file}: invalid JSON ({err})", "fix the file or delete it to use the default template") from None
        return cls.from_dict(d, source=str(file))


# -- the common formats ---------------------------------------------------------------------


def chatml() -> ChatTemplate:
    """ChatML (Qwen, many fine-tunes); needs ``<|im_start|>`` and ``<|im_end|>`` as special tokens."""
    roles = {r: Turn(f"<|im_start|>{r}\n", "<|im_end|>\n") for r in ("system", "user", "assistant")}
    return ChatTemplate("chatml", roles, eos="<|im_end|>", special_tokens=["<|im_start|>", "<|im_end|>"])


def llama3() -> ChatTemplate:
    """Llama-3 instruct: header markers around the role name, ``<|eot_id|>`` ends each turn."""
    roles = {r: Turn(f"<|start_header_id|>{r}<|end_header_id|>\n\n", "<|eot_id|>")
             for r in ("system", "user", "assistant")}
    return ChatTemplate("llama3", roles, eos="<|eot_id|>", bos="<|begin_of_text|>",
                        special_tokens=["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])


def zephyr(eos: str = "</s>") -> ChatTemplate:
    """Zephyr: ``<|user|>\\n...</s>\\n<|assistant|>\\n...</s>\\n``."""
    roles = {r: Turn(f"<|{r}|>\n", f"{eos}\n") for r in ("system", "user", "assistant")}
    return ChatTemplate("zephyr", roles, eos=eos, special_tokens=["<|system|>", "<|user|>", "<|assistant|>", eos])


def plain(eos: str) -> ChatTemplate:
    """Plain-text headers that need no new tokens (pretrained GPT-2 style vocabularies).

    ``eos`` is the tokenizer's own end token, so the model still learns to stop; a model that runs on
    into a new header is stopped by the ``### User:`` stop string.
    """
    roles = {"system": Turn("### System:\n", "\n\n"), "user": Turn("### User:\n", "\n\n"),
             "assistant": Turn("### Assistant:\n", f"{eos}\n\n")}
    return ChatTemplate("plain", roles, eos=eos, special_tokens=[eos], stop_strings=[eos, "### User:"])


TEMPLATES = {"chatml": chatml, "llama3": llama3, "zephyr": zephyr}

# Markers that identify each format, in a Jinja template string or in a vocabulary.
_SIGNATURES = (("chatml", ("<|im_start|>", "<|im_end|>")),
               ("llama3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
               ("zephyr", ("<|user|>", "<|assistant|>")))


def from_hf_chat_template(template: str, eos_token: str | None = None, source: str = "chat_template") -> ChatTemplate:
    """Map a Hugging Face Jinja ``chat_template`` to the declarative form by its markers (no Jinja runs)."""
    for name, markers in _SIGNATURES:
        if all(m in template for m in markers):
            return zephyr(eos_token or "</s>") if name == "zephyr" else TEMPLATES[name]()
    raise ConfigError(f"{source}: not a ChatML, Llama-3 or Zephyr template, and lmforge does not execute Jinja",
                      f"write a {CHAT_TEMPLATE_FILE} beside tokenizer.json (see lmforge.tokenizer.chat), "
                      "or use add_chat_tokens(tok) for ChatML")


def read_hf_tokenizer_config(file: str | Path) -> ChatTemplate | None:
    """The template named by a ``tokenizer_config.json``'s ``chat_template``; None when it has none."""
    file = Path(file)
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{file}: invalid JSON ({err})", "fix or delete the file") from None
    tpl = cfg.get("chat_template")
    if not tpl:
        return None
    if isinstance(tpl, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template", "") for t in tpl if isinstance(t, Mapping)}
        tpl = named.get("default") or next(iter(named.values()), "")
    eos = cfg.get("eos_token")
    eos = eos.get("content") if isinstance(eos, Mapping) else eos
    return from_hf_chat_template(str(tpl), eos_token=eos, source=f"{file}: chat_template")


def default_template(tok: "Tok") -> ChatTemplate:
    """The format a tokenizer already has markers for; else plain text ending with its own eos."""
    vocab = set(_added_tokens(tok))
    for name, markers in _SIGNATURES:
        if all(m in vocab for m in markers):
            eos = tok.meta.get("roles", {}).get("eos") or "</s>"
            return zephyr(eos) if name == "zephyr" else TEMPLATES[name]()
    roles = tok.meta.get("roles", {})
    eos = roles.get("eos") or roles.get("sep")
    if not eos:
        raise ConfigError(f"{tok!r} has no eos (or [SEP]) token to end a chat turn with",
                          "call lmforge.tokenizer.add_chat_tokens(tok) to add ChatML markers")
    return plain(eos)


def add_chat_tokens(tok: "Tok", template: ChatTemplate | None = None) -> "Tok":
    """A copy of ``tok`` with the template's markers added as special tokens (default ChatML).

    The copy's ``vocab_size`` is the size to resize a model's embeddings to; the original is untouched.
    """
    from tokenizers import AddedToken, Tokenizer

    from .tok import Tok

    template = template or chatml()
    hf = Tokenizer.from_str(tok.hf.to_str())
    hf.no_padding()
    hf.no_truncation()
    present = set(_added_tokens(tok))
    new = [m for m in template.special_tokens if m not in present]
    hf.add_special_tokens([AddedToken(m, special=True, normalized=False) for m in new])
    meta = dict(tok.meta)
    meta["special_tokens"] = list(tok.special_tokens) + [m for m in new if m not in tok.special_tokens]
    out = Tok(hf, meta)
    out.chat_template = template
    log.info("added %d chat token(s) %s: vocab size %d -> %d (resize the model's embeddings to %d)",
             len(new), new, tok.vocab_size, out.vocab_size, out.vocab_size)
    return out


def _added_tokens(tok: "Tok") -> list[str]:
    return [t.content for t in tok.hf.get_added_tokens_decoder().values()]


# -- rendering ------------------------------------------------------------------------------


@dataclass
class ChatRender:
    """A rendered conversation. Unpacks as ``ids, loss_mask = tok.render_chat(...)``."""

    ids: list[int]
    loss_mask: list[int]
    truncated: bool = False
    turns_kept: int = 0

    def __iter__(self) -> Iterator[list[int]]:
        return iter((self.ids, self.loss_mask))

    def __len__(self) -> int:
        return len(self.ids)


def _check_messages(messages: Sequence[Mapping[str, Any]], template: ChatTemplate) -> None:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InputError(f"messages must be a list of {{'role', 'content'}} objects, got {type(messages).__name__}",
                         'e.g. [{"role": "user", "content": "Hi"}]')
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise InputError(f"message {i}: expected an object with 'role' and 'content', got {m!r:.80}",
                             'e.g. {"role": "user", "content": "Hi"}')
        if m["role"] not in template.roles:
            raise InputError(f"message {i}: role {m['role']!r} is not in chat template {template.name!r}",
                             f"use one of {sorted(template.roles)}")
        if not isinstance(m["content"], str):
            raise InputError(f"message {i}: content must be a string, got {type(m['content']).__name__}",
                             "join multi-part content into one string")


def _check_markers(tok: "Tok", template: ChatTemplate) -> None:
    present = set(_added_tokens(tok))
    missing = [m for m in template.special_tokens if m not in present]
    if missing:
        raise ConfigError(f"chat template {template.name!r}: marker(s) {missing} are not special tokens of {tok!r}",
                          "use lmforge.tokenizer.add_chat_tokens(tok, template) and resize the model's embeddings "
                          "to the new vocab size")


def render_turns(tok: "Tok", template: ChatTemplate, messages: Sequence[Mapping[str, Any]]
                 ) -> tuple[list[int], list[tuple[list[int], list[int], str]]]:
    """``bos ids`` and one ``(ids, mask, role)`` per message; the mask marks assistant content + eos."""
    _check_messages(messages, template)
    _check_markers(tok, template)
    eos_ids = tok._encode_markup(template.eos)
    turns = []
    for m in messages:
        role = template.roles[m["role"]]
        head = tok._encode_markup(role.prefix)
        body = tok._encode_content(m["content"])
        if m["role"] == "assistant":
            tail = tok._encode_markup(role.suffix[len(template.eos):])
            ids = head + body + eos_ids + tail
            mask = [0] * len(head) + [1] * (len(body) + len(eos_ids)) + [0] * len(tail)
        else:
            tail = tok._encode_markup(role.suffix)
            ids = head + body + tail
            mask = [0] * len(ids)
        turns.append((ids, mask, m["role"]))
    return tok._encode_markup(template.bos), turns


def render(tok: "Tok", template: ChatTemplate, messages: Sequence[Mapping[str, Any]],
           add_generation_prompt: bool = False, max_length: int | None = None) -> ChatRender:
    """Whole turns from the start that fit ``max_length``; a first turn too long for it is cut inside."""
    bos, turns = render_turns(tok, template, messages)
    gen = tok._encode_markup(template.generation_prefix or "") if add_generation_prompt else []
    if max_length is not None and max_length < 1:
        raise InputError(f"max_length={max_length} must be at least 1", "pass a positive length or None")
    budget = None if max_length is None else max_length - len(bos) - len(gen)
    kept, used = 0, 0
    for ids, _, _ in turns:
        if budget is not None and used + len(ids) > budget:
            break
        used += len(ids)
        kept += 1
    truncated = kept < len(turns)
    if truncated and not add_generation_prompt:
        # trailing system/user turns without an answer after them teach nothing: drop them too
        while kept and turns[kept - 1][2] != "assistant":
            kept -= 1
    if truncated and kept == 0:  # not even one whole turn fits: cut the conversation at max_length
        ids = bos + [i for t in turns for i in t[0]]
        mask = [0] * len(bos) + [b for t in turns for b in t[1]]
        return ChatRender(ids[:max_length], mask[:max_length], truncated=True, turns_kept=0)
    ids = bos + [i for t in turns[:kept] for i in t[0]] + gen
    mask = [0] * len(bos) + [b for t in turns[:kept] for b in t[1]] + [0] * len(gen)
    return ChatRender(ids, mask, truncated=truncated, turns_kept=kept)


def prompt(tok: "Tok", template: ChatTemplate, messages: Sequence[Mapping[str, Any]],
           max_length: int | None = None) -> list[int]:
    """Inference prompt ending in the generation prefix; over ``max_length`` the OLDEST turns go first
    (a leading system message stays), since the model must see the latest user message."""
    bos, turns = render_turns(tok, template, messages)
    gen = tok._encode_markup(template.generation_prefix or "")
    if max_length is None:
        return bos + [i for t in turns for i in t[0]] + gen
    system = turns[:1] if turns and turns[0][2] == "system" else []
    rest = turns[len(system):]
    budget = max_length - len(bos) - len(gen) - sum(len(t[0]) for t in system)
    if budget < 0:
        raise InputError(f"the system message alone needs {len(system[0][0])} tokens; the prompt allows {max_length}",
                         "raise max_length or shorten the system message")
    keep: list = []
    for t in reversed(rest):
        if len(t[0]) > budget:
            break
        keep.insert(0, t)
        budget -= len(t[0])
    if rest and not keep:
        raise InputError(f"the last message alone needs {len(rest[-1][0])} tokens; the prompt allows "
                         f"{max_length} with the template's markers", "raise max_length or shorten the message")
    return bos + [i for t in system + keep for i in t[0]] + gen
