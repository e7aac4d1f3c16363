"""The learned tile model: a compact CNN (plain torch) mapping an IHC tile to 0/1+/2+/3+ probabilities.

Input: RGB tiles of ``TILE_PX`` px at ``TILE_MPP`` um/px (128 um). The network
sees optical density (Beer-Lambert), so stain amount is linear in its input.
Weights are saved with their metadata in one file; ``load_model`` checks it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..provenance import file_sha256

TILE_PX = 256
TILE_MPP = 0.5
FORMAT = "her2path-tile-model/1"
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "tile_model.pt"


def rgb_to_od(x: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC RGB -> float NCHW optical density (0 for white glass)."""
    x = x.permute(0, 3, 1, 2).float()
    return -torch.log10((x + 1.0) / 256.0)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TileNet(nn.Module):
    """Four stride-2 conv blocks, then average and max pooling (how much stain, and how strong)."""

    def __init__(self, width: int = 16, n_classes: int = 4):
        super().__init__()
        w = width
        self.features = nn.Sequential(_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 6 * w))
        self.head = nn.Linear(12 * w, n_classes)

    def forward(self, od: torch.Tensor) -> torch.Tensor:
        f = self.features(od)
        return self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1))


def save_model(model: TileNet, path: Path, meta: dict) -> str:
    """Write weights + metadata; returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "width": model.head.in_features // 12, "state_dict": model.state_dict(),
                "meta": meta}, tmp)
    tmp.replace(path)
    return file_sha256(path)


def load_model(path: str | Path | None = None, device: str = "cpu") -> tuple[TileNet, dict]:
    """(model in eval mode, metadata) from a file written by ``her2path train``."""
    path = Path(path) if path else DEFAULT_MODEL
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise InputError("model file not found", path,
                         "train one with `her2path train` or use models/tile_model.pt") from None
    except Exception:
        raise InputError("not a her2path tile model", path, "give a .pt file written by `her2path train`") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError("not a her2path tile model", path, "give a .pt file written by `her2path train`")
    model = TileNet(blob["width"]).to(device)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, {**blob["meta"], "sha256": file_sha256(path)}


@torch.no_grad()
def predict(model: TileNet, tiles: np.ndarray, device: str = "cpu", batch: int = 64) -> np.ndarray:
    """(n, 4) class probabilities for uint8 RGB tiles (n, TILE_PX, TILE_PX, 3)."""
    out = []
    for i in range(0, len(tiles), batch):
        x = rgb_to_od(torch.from_numpy(np.ascontiguousarray(tiles[i:i + batch])).to(device))
        out.append(torch.softmax(model(x), 1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 4), np.float32)


def tile_probabilities(model: TileNet, rgb: np.ndarray, mpp: float, min_tissue_fraction: float = 0.1,
                       white: float = 255.0) -> np.ndarray | None:
    """Mean class probabilities over the 128-um patches of an analysis tile (None: no tissue patch).

    The tile is resampled to ``TILE_MPP`` when analysed at another resolution;
    patches whose tissue (any channel below 85% of ``white``) covers less than
    ``min_tissue_fraction`` are skipped.
    """
    import cv2

    if abs(mpp - TILE_MPP) > 1e-6:
        rgb = cv2.resize(rgb, None, fx=mpp / TILE_MPP, fy=mpp / TILE_MPP, interpolation=cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    patches = []
    for y in range(0, max(h - TILE_PX, 0) + 1, TILE_PX):
        for x in range(0, max(w - TILE_PX, 0) + 1, TILE_PX):
            p = rgb[y:y + TILE_PX, x:x + TILE_PX]
            if p.shape[:2] != (TILE_PX, TILE_PX):
                p = np.pad(p, ((0, TILE_PX - p.shape[0]), (0, TILE_PX - p.shape[1]), (0, 0)), constant_values=255)
            if (p.min(axis=2) < 0.85 * white).mean() >= min_tissue_fraction:
                patches.append(p)
    if not patches:
        return None
    return predict(model, np.stack(patches)).mean(0)
