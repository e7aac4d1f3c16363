"""her2path: HER2 scoring from IHC slides and FISH/ISH fields. Research use only, not for diagnosis."""
__version__ = "0.1.0"

from .classify import classify  # noqa: E402
from .io import open_image  # noqa: E402
from .pipeline.case import run_case  # noqa: E402
from .pipeline.ihc_slide import score_ihc  # noqa: E402
from .pipeline.ish_case import count_ish  # noqa: E402

__all__ = ["__version__", "classify", "count_ish", "open_image", "run_case", "score_ihc"]
