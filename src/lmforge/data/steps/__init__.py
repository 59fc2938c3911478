"""Pipeline steps: each a generator over Documents with in/out/drop counts and timing."""

from .base import Precheck, Step, StepStats
from .dedup import MinHasher, exact_key
from .langid import LangId, detect
from .normalize import Normalize
from .pii import PII, redact
from .quality import Quality
from .segment import Segment

__all__ = ["Step", "StepStats", "Precheck", "Normalize", "LangId", "detect", "Quality", "PII", "redact",
           "MinHasher", "exact_key", "Segment"]
