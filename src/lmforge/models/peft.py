"""Parameter-efficient fine-tuning in our own modules: LoRA (DoRA, rsLoRA), AdaLoRA and IA3 via ``peft``;
bottleneck adapters (Houlsby, Pfeiffer) and prefix tuning written here.

Why not ``peft.PeftModel``: it wraps Hugging Face models. ``peft.inject_adapter_in_model`` (and, for
AdaLoRA, its tuner class, kept because it owns the rank allocator) replaces the targeted ``nn.Linear``
layers of any module in place, so our heads, configs, trainer, checkpoints and loading keep working
unchanged; only saving and loading learn one more layout. peft has no bottleneck adapter, and its
prefix tuning feeds ``past_key_values`` through a Hugging Face model's forward; ours puts the learned
keys and values into our one attention module (layers.Attention), so it works on every body,
KV-cached generation included.

An adapted model directory holds ``config.json`` (the model as always), ``adapter_config.json`` (the
settings, the adapted module names and a reference to the base weights) and ``adapter.safetensors``
(every parameter that was trained: the adapters, the task head, ``modules_to_save``). The base is
referenced, not copied: ``package:NAME``, or a path relative to the model directory so that a run
directory can move as a whole. ``merge`` folds the adapters into the base weights and gives a plain
model that loads everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import safetensors.torch
import torch
from pydantic import Field, field_validator
from torch import nn

from ..config import StrictModel
from ..errors import ConfigError, InputError
from .adapters import (Bottleneck, PrefixKV, PromptEmbedding, add_bottlenecks, add_prefixes, add_prompt,
                       self_attention_names)

ATTR = "lmforge_peft"  # the adapter spec rides on the model object: save_model looks for it
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter.safetensors"
KINDS = {"attention": ("q_proj", "kv_proj", "o_proj"), "mlp": ("gate", "up", "down")}
KINDS["all-linear"] = KINDS["attention"] + KINDS["mlp"]
# output projections and heads of the pretraining objectives: never adapted by a kind
OUTPUT_MODULES = ("lm_head", "mlm_head", "mlm_dense", "nsp_head", "pooler")
METHODS = ("lora", "adalora", "ia3", "bottleneck", "prefix_tuning", "prompt_tuning")
OURS = ("bottleneck", "prefix_tuning", "prompt_tuning")  # models/adapters.py
MERGEABLE = ("lora", "adalora", "ia3")  # weight deltas; bottlenecks and prefixes add computation instead
ADALORA = "lmforge_adalora"  # peft's AdaLoraModel (owns the rank allocator), kept on the model, not as a submodule
NOT_YET = {"qlora": "a 4-bit base needs bitsandbytes' CUDA kernels (GPU only), not wired into lmforge bodies yet; "
                    "on a CPU, LoRA on the fp32 or bf16 base is the option"}


class PeftSettings(StrictModel):
    """``finetune.peft``: which adapters go where."""

    method: str = Field("lora", description="lora, adalora, ia3, bottleneck, prefix_tuning or prompt_tuning "
                                            "(DoRA/rsLoRA are LoRA switches)")
    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA scale numerator: updates are scaled by alpha / r")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA input")
    target: str | list[str] = Field(
        "all-linear", description="attention, mlp, all-linear, or module names (full dotted names or last parts)")
    use_dora: bool = False
    use_rslora: bool = False
    modules_to_save: list[str] = Field(default_factory=list,
                                       description="body modules trained in full as well (e.g. wte)")
    seed: int | None = Field(None, description="seed for the adapters' initialisation (default: the training seed)")
    # AdaLoRA (Zhang et al., 2023): start at init_r, prune to an average of r by importance
    init_r: int | None = Field(None, ge=1, description="AdaLoRA's starting rank (default 1.5 r)")
    tinit: float = Field(0.1, ge=0, lt=1, description="AdaLoRA: share of the steps before ranks are pruned")
    tfinal: float = Field(0.2, ge=0, lt=1, description="AdaLoRA: share of the steps trained at the final ranks")
    delta_t: int = Field(10, ge=1, description="AdaLoRA: steps between rank reallocations")
    orth_reg_weight: float = Field(0.5, ge=0, description="AdaLoRA: weight of the orthogonality penalty on P and Q")
    # bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021)
    placement: str = Field("pfeiffer", description="bottleneck: pfeiffer (after each MLP) or houlsby (after "
                                                  "attention and MLP)")
    bottleneck_size: int | None = Field(None, ge=1, description="bottleneck width (default d_model / 16)")
    # prefix tuning (Li & Liang, 2021)
    num_virtual_tokens: int = Field(20, ge=1, description="prefix_tuning: learned key/value positions per layer; "
                                                          "prompt_tuning: learned input vectors")

    @field_validator("method")
    @classmethod
    def _known(cls, v: str) -> str:
        if v in NOT_YET:
            raise ValueError(f"peft method '{v}' is not available on lmforge bodies yet: {NOT_YET[v]}; "
                             f"use one of {', '.join(METHODS)}")
        if v not in METHODS:
            raise ValueError(f"unknown peft method '{v}' (use one of {', '.join(METHODS)})")
        return v

    @field_validator("placement")
    @classmethod
    def _placement(cls, v: str) -> str:
        if v not in ("pfeiffer", "houlsby"):
            raise ValueError(f"unknown bottleneck placement '{v}' (use pfeiffer or houlsby)")
        return v


def _peft():
    try:
        import peft
    except ImportError:
        raise InputError("finetune.peft needs the peft package", "pip install 'lmforge[peft]' (or pip install peft)") from None
    return peft


def adapted_root(model: nn.Module) -> nn.Module:
    """The module adapters go into: a head model's body, else the model itself (GPT, seq2seq)."""
    return model.body if hasattr(model, "body") else model


def linear_names(root: nn.Module) -> list[str]:
    return [n for n, m in root.named_modules() if isinstance(m, nn.Linear) and n]


def vocab_embeddings(root: nn.Module) -> list[str]:
    """Names of the token-embedding tables (one row per vocabulary entry) in ``root``."""
    v = getattr(getattr(root, "config", None), "vocab_size", None)
    return [n for n, m in root.named_modules() if isinstance(m, nn.Embedding) and m.num_embeddings == v and n]


def resolve_targets(root: nn.Module, target: str | list[str]) -> list[str]:
    """Full module names (relative to ``root``) that ``target`` selects; every name must match something."""
    names = [n for n in linear_names(root) if not any(p in OUTPUT_MODULES for p in n.split("."))]
    if isinstance(target, str) and target in KINDS:
        found = [n for n in names if n.split(".")[-1] in KINDS[target]]
        if not found:
            raise ConfigError(f"finetune.peft.target={target} matches no linear layer of this {type(root).__name__}",
                              f"name modules instead; linear layers here: {', '.join(linear_names(root)[:12]) or 'none'}")
        return found
    wanted = [target] if isinstance(target, str) else list(target)
    every = linear_names(root)
    found: list[str] = []
    for w in wanted:
        hit = [n for n in every if n == w or n.endswith("." + w)]
        if not hit:
            shown = sorted({n.split(".")[-1] for n in every})
            raise ConfigError(f"finetune.peft.target '{w}' matches no linear layer of this {type(root).__name__}",
                              f"use attention, mlp, all-linear, or one of: {', '.join(shown) or 'none (no nn.Linear)'}")
        found += [n for n in hit if n not in found]
    return found


def _peft_config(settings: PeftSettings, targets: list[str]):
    peft = _peft()
    if settings.method == "ia3":  # IA3 scales the input of feed-forward outputs, the output of the rest
        ff = [t for t in targets if t.split(".")[-1] in ("down",)]
        return peft.IA3Config(target_modules=targets, feedforward_modules=ff)
    if settings.method == "adalora":  # step counts are placeholders until the trainer knows them (start_training)
        return peft.AdaLoraConfig(init_r=settings.init_r or max(settings.r + settings.r // 2, settings.r + 1),
                                  target_r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                                  target_modules=targets, total_step=10, tinit=0, tfinal=0, deltaT=settings.delta_t,
                                  orth_reg_weight=settings.orth_reg_weight)
    return peft.LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                           target_modules=targets, use_dora=settings.use_dora, use_rslora=settings.use_rslora)


def _targets(root: nn.Module, settings: PeftSettings) -> list[str]:
    """What the method adapts: linear layers by ``target``; sublayer outputs (bottleneck); attention (prefix)."""
    if settings.method == "bottleneck":
        kinds = ("o_proj", "down") if settings.placement == "houlsby" else ("down",)
        found = [n for n in linear_names(root) if n.split(".")[-1] in kinds]
        if not found:
            raise ConfigError(f"finetune.peft.method=bottleneck: this {type(root).__name__} has no attention or MLP "
                              f"output projection ({' or '.join(kinds)}) to put adapters after",
                              "use it on a Transformer body (GPT, BERT, seq2seq), or lora with module names")
        return found
    if settings.method == "prompt_tuning":
        if not hasattr(root, "prompt"):
            raise ConfigError(f"finetune.peft.method=prompt_tuning needs an encoder body (BERT, seq2seq); this is a "
                              f"{type(root).__name__}",
                              "use prefix_tuning on a GPT: it gives every layer learned virtual keys/values and keeps "
                              "the KV cache and positions as they are")
        return ["prompt"]
    if settings.method == "prefix_tuning":
        found = self_attention_names(root)
        if not found:
            raise ConfigError(f"finetune.peft.method=prefix_tuning needs self-attention layers; this "
                              f"{type(root).__name__} has none", "use it on a Transformer body, or lora with module names")
        return found
    return resolve_targets(root, settings.target)


def inject(model: nn.Module, settings: PeftSettings, base: dict, targets: list[str] | None = None) -> dict:
    """Add adapters to ``model`` in place and freeze the base; returns parameter counts.

    Only parameters outside the adapted root (task heads) and ``modules_to_save`` stay trainable
    next to the adapters."""
    root = adapted_root(model)
    targets = targets if targets is not None else _targets(root, settings)
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    if settings.method in OURS:  # freeze the base first: the adapter modules added next stay trainable
        for p in root.parameters():
            p.requires_grad_(False)
    if settings.method == "bottleneck":
        add_bottlenecks(root, targets, settings.bottleneck_size, settings.dropout)
    elif settings.method == "prefix_tuning":
        add_prefixes(root, targets, settings.num_virtual_tokens)
    elif settings.method == "prompt_tuning":
        add_prompt(root, settings.num_virtual_tokens)
    elif settings.method == "adalora":  # the tuner object owns the rank allocator the trainer steps
        tuner = _peft().AdaLoraModel(root, _peft_config(settings, targets), "default")
        object.__setattr__(model, ADALORA, (tuner, settings))  # not registered: tuner.model is root itself
    else:
        _peft().inject_adapter_in_model(_peft_config(settings, targets), root)
    modules = dict(root.named_modules())
    for name in settings.modules_to_save:
        if name not in modules:
            top = sorted({n.split(".")[0] for n in modules if n})
            raise ConfigError(f"finetune.peft.modules_to_save '{name}' is not a module of this {type(root).__name__}",
                              f"top-level modules: {', '.join(top)}")
        for p in modules[name].parameters():
            p.requires_grad_(True)
    setattr(model, ATTR, {"settings": settings.model_dump(), "targets": targets, "base": base})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    adapter = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and _is_adapter(n))
    return {"method": settings.method, "adapted_modules": len(targets), "trainable_params": trainable,
            "adapter_params": adapter, "total_params": total, "trainable_share": round(trainable / total, 6)}


def _is_adapter(name: str) -> bool:
    return any(k in name for k in ("lora_", "ia3_", "adapter_", "prefix_", "prompt_"))


def start_training(model: nn.Module, total_steps: int) -> None:
    """AdaLoRA's schedule is in steps: set it once the trainer knows how many there are."""
    held = getattr(model, ADALORA, None)
    if held is None:
        return
    tuner, settings = held
    c = tuner.peft_config["default"]
    c.total_step, c.tinit, c.tfinal = total_steps, int(settings.tinit * total_steps), int(settings.tfinal * total_steps)
    if c.tinit >= c.total_step - c.tfinal:
        raise ConfigError(f"finetune.peft: AdaLoRA's tinit ({settings.tinit}) and tfinal ({settings.tfinal}) leave no "
                          f"steps of {total_steps} to reallocate ranks in", "lower tinit/tfinal or train longer")


def regulariser(model: nn.Module) -> torch.Tensor | None:
    """AdaLoRA's orthogonality penalty on P (lora_A) and Q (lora_B), as peft's AdaLoraModel.forward adds it."""
    held = getattr(model, ADALORA, None)
    if held is None or held[1].orth_reg_weight == 0:
        return None
    terms = []
    for n, p in adapted_root(model).named_parameters():
        if p.requires_grad and ("lora_A" in n or "lora_B" in n):
            cov = p @ p.T if "lora_A" in n else p.T @ p
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)))
    return held[1].orth_reg_weight * torch.stack(terms).mean() if terms else None


def after_step(model: nn.Module, step: int) -> None:
    """After the optimizer step, before the gradients are cleared: AdaLoRA scores and prunes ranks."""
    held = getattr(model, ADALORA, None)
    if held is not None:
        held[0].update_and_allocate(step)


def adapter_ranks(model: nn.Module) -> dict[str, int] | None:
    """AdaLoRA: the rank each adapted module kept (its non-zero singular values)."""
    if getattr(model, ADALORA, None) is None:
        return None
    return {n[: -len(".lora_E.default")]: int((p != 0).sum()) for n, p in adapted_root(model).named_parameters()
            if n.endswith("lora_E.default")}


def is_adapted(model: nn.Module) -> bool:
    return getattr(model, ATTR, None) is not None


def _adapter_layers(root: nn.Module) -> list[tuple[str, nn.Module]]:
    kinds: tuple = (Bottleneck, PrefixKV, PromptEmbedding)
    try:
        import peft

        kinds += (peft.tuners.tuners_utils.BaseTunerLayer,)
    except ImportError:
        pass
    return [(n, m) for n, m in root.named_modules() if isinstance(m, kinds)]


def check_gradients(model: nn.Module) -> None:
    """After a backward pass: every adapted module got a non-zero gradient, else training it is a no-op."""
    dead = []
    for name, m in _adapter_layers(adapted_root(model)):
        grads = [p.grad for n, p in m.named_parameters() if _is_adapter(n) and p.requires_grad]
        if not grads or all(g is None or not torch.any(g != 0) for g in grads):
            dead.append(name)
    if dead:
        raise ConfigError(f"{len(dead)} adapted module(s) received no gradient in the first step: {', '.join(dead[:8])}",
                          "target modules the task's forward pass uses (e.g. not the pooler under mean pooling), "
                          "or check that nothing else freezes them")


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def base_reference(spec: str | Path) -> dict:
    """What ``adapter_config.json`` records about the base: ``package:NAME`` or a directory, plus a checksum."""
    spec = str(spec)
    ref: dict = {"spec": spec}
    path = _resolve(spec, None)
    if not spec.startswith("package:"):
        ref["abs"] = str(path.resolve())  # turned into a path relative to the saved model
    weights = path / "model.safetensors"
    if weights.exists():
        ref["sha256"] = _sha256(weights)
    return ref


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _resolve(spec: str, model_dir: Path | None) -> Path:
    """``package:NAME`` anywhere; a relative path is relative to the adapted model's directory."""
    from .io import resolve_model_dir

    p = resolve_model_dir(spec)
    return (model_dir / p) if (model_dir is not None and not spec.startswith("package:") and not p.is_absolute()) else p


def load_base(path: Path) -> nn.Module:
    """A base model directory: an lmforge one (config.json with our model_type) or a Hugging Face one."""
    from .io import _model_types, load_model

    cfg = path / "config.json"
    if not cfg.exists():
        raise InputError(f"base model not found at {path}", "restore it, or merge the adapter where the base exists")
    d = json.loads(cfg.read_text())
    hf = "hidden_size" in d or "n_embd" in d  # Hugging Face naming (BERT/LLaMA, GPT-2): its model_type may equal ours
    if not hf and d.get("model_type") in _model_types():
        return load_model(path)
    from .hf import import_hf

    return import_hf(path)[0]


def save_adapted(model: nn.Module, directory: Path, extra_files=()) -> Path:
    """``config.json`` + ``adapter_config.json`` + ``adapter.safetensors`` (trained parameters only)."""
    from ..runs import atomic_dir, atomic_write_json

    spec = dict(getattr(model, ATTR))
    ranks = adapter_ranks(model)
    if ranks is not None:  # what AdaLoRA kept; the pruned singular values are stored as zeros
        spec["ranks"] = ranks
    base = dict(spec["base"])
    directory = Path(directory)
    if not base["spec"].startswith("package:") and "abs" in base:  # relative to where the model is written
        base["spec"] = os.path.relpath(base["abs"], directory.resolve())
    spec["base"] = {k: v for k, v in base.items() if k != "abs"}
    with atomic_dir(directory) as tmp:
        safetensors.torch.save_file(trainable_state(model), str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        atomic_write_json(tmp / ADAPTER_CONFIG, spec)
        atomic_write_json(tmp / "config.json", model.config.to_dict())
        for f in extra_files:
            shutil.copy2(f, tmp / Path(f).name)
    return directory


def load_trainable(model: nn.Module, directory: Path) -> None:
    """Load ``adapter.safetensors`` into an adapted model; its keys must be exactly the trainable ones."""
    path = Path(directory) / ADAPTER_WEIGHTS
    state = safetensors.torch.load_file(str(path))
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise InputError(f"{path} does not match its adapter_config.json",
                         f"missing {missing[:3]}, unexpected {extra[:3]}: retrain or restore the file")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)


def load_adapted(directory: str | Path, device: str = "cpu") -> nn.Module:
    """Base weights from the reference, adapters injected as recorded, trained parameters loaded."""
    from .io import model_from_dict, read_config_dict

    directory = Path(directory)
    spec = json.loads((directory / ADAPTER_CONFIG).read_text())
    d = read_config_dict(directory)
    base_dir = _resolve(spec["base"]["spec"], directory)
    if "sha256" in spec["base"] and (base_dir / "model.safetensors").exists():
        if _sha256(base_dir / "model.safetensors") != spec["base"]["sha256"]:
            raise InputError(f"the base model at {base_dir} changed since {directory} was trained",
                             "restore the original base, or retrain the adapter on this one")
    base = load_base(base_dir)
    spec["base"]["abs"] = str(base_dir.resolve())  # saving this model again re-relativises the path
    if "body" in d:
        model = model_from_dict(d)
        model.body = base
    else:
        model = base
    if json.loads(json.dumps(model.config.to_dict())) != d:
        raise InputError(f"the base model at {base_dir} does not match {directory / 'config.json'}",
                         "point adapter_config.json's base at the model this adapter was trained on")
    inject(model, PeftSettings(**spec["settings"]), spec["base"], targets=spec["targets"])
    load_trainable(model, directory)
    return model.to(device)


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base layer and drop the adapter modules (in place): a plain model."""
    peft = _peft()
    method = getattr(model, ATTR, {}).get("settings", {}).get("method", "lora")
    if method not in MERGEABLE:
        raise ConfigError(f"a {method} adapter cannot be merged: it adds computation beside the base weights, "
                          "not a change to them",
                          f"use the adapted model directory as it is (it loads wherever lmforge models load); "
                          f"merging works for {', '.join(MERGEABLE)}")
    root = adapted_root(model)
    layers = [(n, m) for n, m in root.named_modules() if isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer)]
    for name, m in layers:
        m.merge()
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        setattr(parent, child, m.get_base_layer())
    for p in model.parameters():
        p.requires_grad_(True)
    if hasattr(model, ATTR):
        delattr(model, ATTR)
    model.__dict__.pop(ADALORA, None)
    return model
