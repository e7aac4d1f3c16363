"""The shared classifier: guideline engine (rules as data) and the learned tile model."""
from .guideline import classify

__all__ = ["classify"]
