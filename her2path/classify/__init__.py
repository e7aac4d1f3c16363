"""The shared classifier: the guideline engine (``rules.status.classify``) and the learned tile model."""
from ..rules.status import classify

__all__ = ["classify"]
