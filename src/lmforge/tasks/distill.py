"""Knowledge distillation: a fine-tuned teacher's soft labels train a (smaller) student.

The teacher scores every training example once, with its own tokenizer and encoding, before the
student trains; its logits ride on the student's features (``teacher``), so teacher and student need
not share a vocabulary or an architecture, and the teacher costs nothing per training step. The
student's loss is ``(1 - alpha) * task loss + alpha * T^2 * KL(teacher_T || student_T)`` with both
distributions softened by the temperature T (Hinton et al., 2015); validation keeps the plain task loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field

from ..config import StrictModel
from ..errors import ConfigError

SUPPORTED = ("classification",)


class DistillSettings(StrictModel):
    """``finetune.distill``: which teacher, how soft, how much."""

    teacher: str = Field(..., description="a fine-tuned model directory of the same task and label set")
    temperature: float = Field(2.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the distillation term (1 - alpha: the task loss)")
    batch_size: int = Field(64, ge=1, description="batch size of the teacher's one pass over the training set")


def attach_teacher_logits(settings: DistillSettings, task, examples: list[dict], features: list[dict],
                          progress: bool = True) -> dict:
    """Score ``examples`` with the teacher and store its logits on ``features`` (in place)."""
    from .stage import encode_all, load_task_model

    if task.kind not in SUPPORTED or getattr(task.cfg, "multi_label", False):
        raise ConfigError(f"finetune.distill is not available for the {task.kind} task yet",
                          f"distillation works for single-label {', '.join(SUPPORTED)} so far")
    if not (Path(settings.teacher) / "task.json").exists():
        raise ConfigError(f"finetune.distill.teacher: {settings.teacher} is not a fine-tuned task model",
                          "point it at e.g. runs/<recipe>/finetune/pretrained/model")
    tteacher, model, ttok = load_task_model(settings.teacher)
    if tteacher.kind != task.kind:
        raise ConfigError(f"the teacher at {settings.teacher} is a {tteacher.kind} model, the student a {task.kind} one",
                          "distil from a teacher fine-tuned on the same task")
    if list(tteacher.labels) != list(task.labels) or tteacher.cfg.multi_label != task.cfg.multi_label:
        raise ConfigError(f"the teacher's labels {list(tteacher.labels)} differ from the student's {list(task.labels)}",
                          "fine-tune the teacher on the same label set (same names, same order)")
    tfeats = encode_all(tteacher, examples, ttok)
    order = sorted(range(len(tfeats)), key=lambda i: tteacher.length(tfeats[i]))
    from ..progress import progress_bar

    with torch.no_grad(), progress_bar(progress) as bar:
        t = bar.add_task("teacher", total=len(order), info="")
        for s in range(0, len(order), settings.batch_size):
            idx = order[s: s + settings.batch_size]
            batch = tteacher.collate([tfeats[i] for i in idx], ttok)
            logits = model(batch["input_ids"], batch["attention_mask"])[0].float()
            for i, row in zip(idx, logits.tolist()):
                features[i]["teacher"] = row
            bar.advance(t, len(idx))
    agree = sum(max(range(len(f["teacher"])), key=f["teacher"].__getitem__) == f["label"] for f in features)
    return {"teacher": str(settings.teacher), "temperature": settings.temperature, "alpha": settings.alpha,
            "teacher_train_accuracy": round(agree / max(len(features), 1), 6)}


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, task_loss_sum: torch.Tensor,
                 count: int, temperature: float, alpha: float) -> torch.Tensor:
    """Summed over the batch (the trainer divides by the count): the task term and the KD term."""
    t = temperature
    kd = F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1),
                  log_target=True, reduction="sum") * t * t
    return (1 - alpha) * task_loss_sum + alpha * kd * (count / max(student_logits.shape[0], 1))
