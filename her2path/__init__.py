"""her2path: HER2 scoring from IHC slides and FISH/ISH fields. Research use only, not for diagnosis.

The package top gathers the public API; modules below the CLI never import it
(they take the version from ``her2path._version``).
"""
from ._version import __version__
from .classify import classify
from .io import open_image
from .pipeline.batch import run_batch
from .pipeline.case import run_case
from .pipeline.ihc_slide import score_ihc
from .pipeline.ish_case import count_ish

__all__ = ["__version__", "classify", "count_ish", "open_image", "run_batch", "run_case", "score_ihc"]
