"""``her2path train`` and ``her2path evaluate``: fit and test the tile model on an annotated dataset.

Training: stratified train/validation split, class-balanced sampling, flips and
right-angle turns, stain augmentation in optical-density space (each tile's
OD mixed by a random near-identity 3x3 matrix and scaled), AdamW with cosine
decay, a checkpoint every epoch (resumed when found), early stopping on
validation quadratic weighted kappa. CPU by default; CUDA with fp16 autocast.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .._version import SOFTWARE
from ..errors import InputError
from ..schema import CLASSES
from ..io.writers import atomic_write_bytes, write_image
from .datasets import TileSet, load_tile_set, read_tile
from .metrics import confusion, qwk
from .model import TILE_MPP, TILE_PX, TileNet, embeddings, fit_novelty, load_model, predict, rgb_to_od, save_model


def _device(name: str) -> str:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but torch sees no CUDA GPU", fix="use --device cpu")
    return name


def load_pixels(ts: TileSet) -> np.ndarray:
    """All tiles as one uint8 array (n, TILE_PX, TILE_PX, 3)."""
    return np.stack([read_tile(p, TILE_PX) for p in ts.paths]) if len(ts) else np.zeros((0, TILE_PX, TILE_PX, 3),
                                                                                        np.uint8)


def split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, validation) indices; every class keeps at least one validation tile."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in range(len(CLASSES)):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = max(1, int(round(val_fraction * len(idx)))) if len(idx) > 1 else 0
        va += idx[:k].tolist()
        tr += idx[k:].tolist()
    return np.array(sorted(tr)), np.array(sorted(va))


def augment(od: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips, right-angle turns and stain jitter on a batch of OD tiles (N, 3, H, W)."""
    n = od.shape[0]
    if torch.rand(1, generator=gen).item() < 0.5:
        od = od.flip(3)
    od = torch.rot90(od, int(torch.randint(0, 4, (1,), generator=gen)), (2, 3))
    mix = torch.eye(3) + 0.06 * torch.randn(n, 3, 3, generator=gen)
    scale = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    return torch.einsum("nchw,ncd->ndhw", od, mix.to(od.device)).clamp_min(0) * scale.to(od.device)


def _evaluate_arrays(model, pixels, labels, device) -> dict:
    model.eval()
    pred = predict(model, pixels, device).argmax(1)
    m = confusion(labels, pred)
    return {"n": int(len(labels)), "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
            "qwk": qwk(labels, pred), "confusion": m.tolist(),
            "recall": {c: float(m[i, i] / m[i].sum()) if m[i].sum() else None for i, c in enumerate(CLASSES)}}


def confusion_png(matrix, path: Path, title: str) -> Path:
    """Confusion matrix as a PNG: rows truth, columns prediction, shaded by row share."""
    m = np.asarray(matrix, float)
    cell, pad = 90, 110
    img = np.full((pad + 4 * cell + 20, pad + 4 * cell + 20, 3), 255, np.uint8)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i in range(4):
        for j in range(4):
            x, y = pad + j * cell, pad + i * cell
            shade = int(255 - 200 * share[i, j])
            cv2.rectangle(img, (x, y), (x + cell - 2, y + cell - 2), (shade, shade, 255), -1)
            cv2.putText(img, str(int(m[i, j])), (x + 22, y + 52), font, 0.8,
                        (255, 255, 255) if share[i, j] > 0.5 else (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(img, CLASSES[i], (pad - 50, pad + i * cell + 52), font, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(img, CLASSES[i], (pad + i * cell + 25, pad - 20), font, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(img, title, (10, 30), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "truth (rows) / model (columns)", (10, 60), font, 0.5, (80, 80, 80), 1, cv2.LINE_AA)
    return write_image(path, img)


def train(dataset: str | Path, out: str | Path, epochs: int = 30, device: str = "cpu", seed: int = 0,
          batch: int = 32, lr: float = 3e-3, val_fraction: float = 0.2, patience: int = 6,
          init: str | Path | None = None, resume: bool = True, progress: bool = True,
          max_minutes: float | None = None) -> dict:
    """Train a tile model; writes OUT (best weights), OUT.ckpt, OUT-metrics.json and OUT-confusion.png.

    ``init`` starts from an existing model (retraining on a lab's tiles).
    Returns the metrics of the best epoch on the validation split.
    """
    device = _device(device)
    out = Path(out)
    ts = load_tile_set(dataset)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    pixels = load_pixels(ts)
    tr, va = split(ts.labels, val_fraction, seed)
    model = load_model(init, device)[0] if init else TileNet().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    ckpt = out.with_name(out.name + ".ckpt")
    state = {"epoch": 0, "best_qwk": -1.0, "stale": 0, "history": []}
    if resume and ckpt.exists():
        blob = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["opt"])
        state = blob["state"]
        gen.set_state(blob["gen"])
    counts = np.bincount(ts.labels[tr], minlength=4).astype(float)
    weights = torch.from_numpy(1.0 / counts[ts.labels[tr]])
    steps = max(1, math.ceil(len(tr) / batch))
    loss_fn = nn.CrossEntropyLoss()
    use_amp = device == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    t_start = time.perf_counter()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]train[/bold] epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.3f}  val QWK {task.fields[qwk]}"), TimeRemainingColumn(),
                   disable=not progress, transient=True)
    with bar:
        while state["epoch"] < epochs and state["stale"] < patience:
            ep = state["epoch"]
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * ep / epochs))
            model.train()
            order = tr[torch.multinomial(weights, len(tr), replacement=True, generator=gen).numpy()]
            task = bar.add_task("", total=steps, epoch=ep + 1, loss=0.0, qwk="-")
            t0, total = time.perf_counter(), 0.0
            for s in range(steps):
                idx = order[s * batch:(s + 1) * batch]
                x = augment(rgb_to_od(torch.from_numpy(pixels[idx])), gen).to(device)
                y = torch.from_numpy(ts.labels[idx]).to(device)
                with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                    loss = loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                total += loss.item()
                bar.update(task, advance=1, loss=total / (s + 1))
            train_s = time.perf_counter() - t0
            val = _evaluate_arrays(model, pixels[va], ts.labels[va], device)
            bar.update(task, qwk=f"{val['qwk']:.3f}")
            bar.remove_task(task)
            improved = val["qwk"] > state["best_qwk"]
            state["history"].append({"epoch": ep + 1, "loss": total / steps, "val_qwk": val["qwk"],
                                     "val_accuracy": val["accuracy"], "train_seconds": train_s})
            meta = {"software": SOFTWARE, "tile_px": TILE_PX, "tile_mpp": TILE_MPP,
                    "classes": list(CLASSES), "dataset": str(dataset), "tiles": len(ts), "train_tiles": len(tr),
                    "val_tiles": len(va), "seed": seed, "epoch": ep + 1, "val": val,
                    "init": str(init) if init else None}
            if improved:
                state.update(best_qwk=val["qwk"], stale=0, best=meta)
                save_model(model, out, meta)
            else:
                state["stale"] += 1
            state["epoch"] = ep + 1
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                        "gen": gen.get_state()}, ckpt.with_suffix(".tmp"))
            ckpt.with_suffix(".tmp").replace(ckpt)
            if not progress:
                print(f"epoch {ep + 1}: loss {total / steps:.3f}, val QWK {val['qwk']:.3f}, "
                      f"accuracy {val['accuracy']:.3f}, {train_s:.0f} s", flush=True)
            if max_minutes and (time.perf_counter() - t_start) > 60 * max_minutes:
                break
    best = state.get("best")
    if best is None:
        raise InputError("training produced no model", dataset, "check the dataset has tiles of every class")
    # What the best model knows: its features on the training tiles, and how far validation tiles lie.
    model, _ = load_model(out, device)
    novelty = fit_novelty(embeddings(model, pixels[tr], device), ts.labels[tr], embeddings(model, pixels[va], device))
    save_model(model, out, best, novelty)
    metrics = {**best, "history": state["history"], "stopped": "early" if state["stale"] >= patience else "epochs"}
    atomic_write_bytes(out.with_name(out.stem + "-metrics.json"), (json.dumps(metrics, indent=2) + "\n").encode())
    confusion_png(best["val"]["confusion"], out.with_name(out.stem + "-confusion.png"),
                  f"validation, epoch {best['epoch']}: QWK {best['val']['qwk']:.3f}")
    return metrics


def evaluate(dataset: str | Path, model_path: str | Path | None = None, device: str = "cpu") -> dict:
    """accuracy, qwk, confusion (4x4, rows truth) and per-class recall of a model on a dataset."""
    ts = load_tile_set(dataset)
    model, meta = load_model(model_path, _device(device))
    res = _evaluate_arrays(model, load_pixels(ts), ts.labels, device)
    return {**res, "model_sha256": meta["sha256"], "dataset": str(dataset)}
