"""The learned tile model: a compact CNN (plain torch) mapping an IHC tile to 0/1+/2+/3+ probabilities.

Input: RGB tiles of ``TILE_PX`` px at ``TILE_MPP`` um/px (128 um). The network
sees optical density (Beer-Lambert), so stain amount is linear in its input.
Weights are saved with their metadata in one file; ``load_model`` checks it.

The model knows what it was trained on: after training, the class means and
the shared covariance of its pooled features are stored with the weights
(``fit_novelty``), and a tile whose features lie further from every class
than ``novelty.threshold`` (the 99th percentile over the training data's own
validation tiles, in Mahalanobis distance) is outside that data: the model
abstains there instead of voting.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import DEFAULT_TILE_MODEL
from ..errors import InputError
from ..provenance import file_sha256

TILE_PX = 256
TILE_MPP = 0.5
FORMAT = "her2path-tile-model/2"          # /2: with novelty statistics; /1 files load and never abstain
FORMATS = ("her2path-tile-model/1", FORMAT)


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

    def embed(self, od: torch.Tensor) -> torch.Tensor:
        """Pooled features (N, 12 * width): the mean and the maximum of the last block."""
        f = self.features(od)
        return torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)

    def forward(self, od: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(od))


def save_model(model: TileNet, path: Path, meta: dict, novelty: dict | None = None) -> str:
    """Write weights + metadata (+ novelty statistics); returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "width": model.head.in_features // 12, "state_dict": model.state_dict(),
                "meta": meta, "novelty": novelty}, tmp)
    tmp.replace(path)
    return file_sha256(path)


@torch.no_grad()
def embeddings(model: TileNet, tiles: np.ndarray, device: str = "cpu", batch: int = 64) -> np.ndarray:
    """(n, d) pooled features of uint8 RGB tiles (n, TILE_PX, TILE_PX, 3)."""
    out = []
    for i in range(0, len(tiles), batch):
        x = rgb_to_od(torch.from_numpy(np.ascontiguousarray(tiles[i:i + batch])).to(device))
        out.append(model.embed(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.head.in_features), np.float32)


def fit_novelty(train_features: np.ndarray, labels: np.ndarray, val_features: np.ndarray,
                quantile: float = 99.0, ridge: float = 1e-3) -> dict:
    """Class means, shared precision matrix and the distance threshold of the training data.

    The threshold is the ``quantile`` of the validation tiles' distance to their nearest class mean.
    """
    means = np.stack([train_features[labels == c].mean(0) for c in np.unique(labels)])
    centred = train_features - means[np.searchsorted(np.unique(labels), labels)]
    cov = np.cov(centred, rowvar=False)
    cov += (ridge * np.trace(cov) / len(cov) + 1e-9) * np.eye(len(cov))   # a few tiles: still invertible
    novelty = {"means": means.tolist(), "precision": np.linalg.pinv(cov, hermitian=True).tolist(),
               "threshold": 0.0}
    novelty["threshold"] = float(np.percentile(distances(val_features, novelty), quantile))
    return novelty


def distances(features: np.ndarray, novelty: dict) -> np.ndarray:
    """Mahalanobis distance of each feature vector to its nearest class mean."""
    means, prec = np.asarray(novelty["means"]), np.asarray(novelty["precision"])
    d = features[:, None, :] - means[None, :, :]
    return np.sqrt(np.einsum("nkd,de,nke->nk", d, prec, d).min(axis=1))


def novelty_ratio(model: TileNet, features: np.ndarray) -> np.ndarray:
    """(n,) each feature vector's distance to the training data (``distances``) over the model's novelty
    threshold: above 1 lies outside what the model was trained on. Zeros for a model without novelty
    statistics (format /1), which abstains only where no patch holds tissue."""
    novelty = getattr(model, "novelty", None)
    if novelty is None:
        return np.zeros(len(features))
    return distances(features, novelty) / novelty["threshold"]


def load_model(path: str | Path | None = None, device: str = "cpu") -> tuple[TileNet, dict]:
    """(model in eval mode, metadata) from a file written by ``her2path train``."""
    path = Path(path) if path else DEFAULT_TILE_MODEL
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise InputError("model file not found", path,
                         "train one with `her2path train` or use models/tile_model.pt") from None
    except Exception:
        raise InputError("not a her2path tile model", path, "give a .pt file written by `her2path train`") from None
    if not isinstance(blob, dict) or blob.get("format") not in FORMATS:
        raise InputError("not a her2path tile model", path, "give a .pt file written by `her2path train`")
    model = TileNet(blob["width"]).to(device)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    model.novelty = blob.get("novelty")
    return model, {**blob["meta"], "sha256": file_sha256(path)}


@torch.no_grad()
def probabilities(model: TileNet, features: np.ndarray) -> np.ndarray:
    """(n, 4) class probabilities from pooled features (``embeddings``): the model's head alone."""
    if len(features) == 0:
        return np.zeros((0, model.head.out_features), np.float32)
    w = next(model.head.parameters())
    return torch.softmax(model.head(torch.from_numpy(features).to(w.device, w.dtype)), 1).float().cpu().numpy()


def predict(model: TileNet, tiles: np.ndarray, device: str = "cpu", batch: int = 64) -> np.ndarray:
    """(n, 4) class probabilities for uint8 RGB tiles (n, TILE_PX, TILE_PX, 3)."""
    return probabilities(model, embeddings(model, tiles, device, batch))


def tile_probabilities(model: TileNet, rgb: np.ndarray, mpp: float, min_tissue_fraction: float = 0.1,
                       white: float = 255.0) -> tuple[np.ndarray | None, bool]:
    """(mean class probabilities over the 128-um patches of an analysis tile, abstained).

    ``abstained`` is set when the patches' features lie, on average, further
    from the training data than the model's novelty threshold: the tile is
    unlike anything the model was trained on, and its vote is withheld. So it
    is when no patch holds enough stained tissue to read (probabilities None):
    pale tissue (a real signet-ring core: 7 of its 10 compared tiles) is as
    far outside its training as glass. The tile is resampled to
    ``TILE_MPP`` when analysed at another resolution; patches whose tissue (any
    channel below 85% of ``white``) covers less than ``min_tissue_fraction``
    are skipped.
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
        return None, True
    features = embeddings(model, np.stack(patches))          # once: for the vote and for the novelty test
    return probabilities(model, features).mean(0), bool(np.mean(novelty_ratio(model, features)) > 1)
