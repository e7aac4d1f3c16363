"""Input: slides and plain images (slide.py), tiling (tiling.py), fluorescence fields."""
from .slide import SlideImage, open_image, sniff_format

__all__ = ["SlideImage", "open_image", "sniff_format"]
