"""Per-nucleus ERBB2 and CEP17 counts over a case's fields, and the ISH call by guideline."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from ..guidelines import Guideline, ish_group
from ..optics import optical_density
from .nuclei import IshNuclei, segment_nuclei
from .spots import Blobs, copies_from_intensity, detect_blobs, single_reference

# Brightfield dual ISH chromogens (unit OD vectors R, G, B).
BF_HEMATOXYLIN = (0.650, 0.704, 0.286)
BF_SILVER = (0.58, 0.60, 0.55)          # black silver dots: HER2
BF_RED = (0.10, 0.75, 0.55)             # Fast Red dots: CEP17
BF_SILVER_OPAQUE = 1.0                  # silver OD above which no colour is left to read


BLEED = 0.35        # a blob under this share of a co-located other-colour blob (signal units) is bleed-through
BLEED_JPEG = 0.7    # JPEG composites share chroma between 2x2 pixels: a green spot echoes at ~0.4-0.6 in red


@dataclass
class FieldSignals:
    nuclei: IshNuclei
    her2: Blobs
    cep17: Blobs
    diameter_px: float   # one signal's diameter: blobs of both colours closer than this are one place
    bleed: float = BLEED  # share under which a co-located blob is taken for the other colour's echo


def brightfield_channels(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Hematoxylin, silver (HER2) and red (CEP17) optical densities of a brightfield dual-ISH field.

    Values are signed (noise is measured on them). Under dense silver the camera
    is near black and the colour is lost, so the red image is blanked there
    (``BF_SILVER_OPAQUE`` OD, plus one pixel): a cluster's edge is not taken for CEP17.
    """
    m = np.array([BF_HEMATOXYLIN, BF_SILVER, BF_RED], float)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    conc = optical_density(rgb).reshape(-1, 3) @ np.linalg.inv(m).astype(np.float32)
    h, silver, red = (conc[:, i].reshape(rgb.shape[:2]) for i in range(3))
    opaque = cv2.dilate((silver > BF_SILVER_OPAQUE).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    red[opaque] = np.median(red)
    return {"nuclear": h, "her2": silver, "cep17": red}


def analyse_field(channels: dict[str, np.ndarray], mpp: float, sigma_um: float, k_noise: float = 6.0) -> FieldSignals:
    """Nuclei and the signals of both probes in one field (channels: nuclear, her2, cep17)."""
    nuclei = segment_nuclei(channels["nuclear"], mpp)
    mask = nuclei.labels > 0
    return FieldSignals(nuclei, detect_blobs(channels["her2"], mpp, sigma_um, k_noise, mask),
                        detect_blobs(channels["cep17"], mpp, sigma_um, k_noise, mask), 4 * sigma_um / mpp)


def _owner(blobs: Blobs, labels: np.ndarray) -> np.ndarray:
    """Nucleus label under each blob centre (0: outside every nucleus)."""
    x = np.clip(np.round(blobs.xy[:, 0]).astype(int), 0, labels.shape[1] - 1)
    y = np.clip(np.round(blobs.xy[:, 1]).astype(int), 0, labels.shape[0] - 1)
    return labels[y, x]


def _counts(blobs: Blobs, copies: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Copies per nucleus; signals outside nuclei (debris, cytoplasm) are ignored."""
    if len(blobs.xy) == 0:
        return np.zeros(n, int)
    owner = _owner(blobs, labels)
    inside = owner > 0
    return np.bincount(owner[inside] - 1, copies[inside], n).astype(int)


def _pairs(f: FieldSignals) -> tuple[np.ndarray, np.ndarray]:
    """(HER2 index, CEP17 index) of blobs of the two colours within one signal diameter."""
    if len(f.her2.xy) == 0 or len(f.cep17.xy) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    d, j = cKDTree(f.cep17.xy).query(f.her2.xy, distance_upper_bound=f.diameter_px)
    i = np.flatnonzero(np.isfinite(d))
    return i, j[i]


def _copies(fields: list[FieldSignals], cluster_min: float, rounds: int = 3) -> tuple[dict, list]:
    """Single-signal references and the copies of every blob, bleed-through removed.

    One spot seen in both colours (channel cross-talk, or a JPEG composite's
    shared chroma) is kept in the colour where it is bright and dropped in the
    one where it is under ``bleed`` of that (``BLEED``; ``BLEED_JPEG`` for JPEG
    composites), both in single-signal units. As
    bleed-through can outnumber real signals, the references and the dropped
    blobs are found together: each round takes the references from the
    in-nucleus blobs still counted, then re-decides the pairs.
    """
    pairs = [_pairs(f) for f in fields]
    inside = {p: [_owner(getattr(f, p), f.nuclei.labels) > 0 for f in fields] for p in ("her2", "cep17")}
    counted = {p: [m.copy() for m in inside[p]] for p in inside}
    for _ in range(rounds):
        ref = {p: single_reference([getattr(f, p) for f in fields], counted[p]) for p in inside}
        copies = []
        for f, (i, j) in zip(fields, pairs):
            h = copies_from_intensity(f.her2.integrated, ref["her2"], cluster_min)
            c = copies_from_intensity(f.cep17.integrated, ref["cep17"], cluster_min)
            if ref["her2"] > 0 and ref["cep17"] > 0:
                uh, uc = f.her2.integrated[i] / ref["her2"], f.cep17.integrated[j] / ref["cep17"]
                h[i[uh < f.bleed * uc]] = 0
                c[j[uc < f.bleed * uh]] = 0
            copies.append((h, c))
        counted = {"her2": [m & (h > 0) for m, (h, _) in zip(inside["her2"], copies)],
                   "cep17": [m & (c > 0) for m, (_, c) in zip(inside["cep17"], copies)]}
    return ref, copies


def count_case(fields: list[FieldSignals], guideline: Guideline, cluster_min: float = 2.5) -> dict:
    """Pool the fields: per-nucleus counts, case figures, group and call with reasons."""
    ref, copies = _copies(fields, cluster_min)
    table = {k: [] for k in ("field", "x", "y", "her2", "cep17", "evaluable", "why_not")}
    for i, (f, (hc, cc)) in enumerate(zip(fields, copies)):
        n = len(f.nuclei.xy)
        h = _counts(f.her2, hc, f.nuclei.labels, n)
        c = _counts(f.cep17, cc, f.nuclei.labels, n)
        why = list(f.nuclei.why_not)
        for j in range(n):
            if not why[j] and (h[j] == 0 or c[j] == 0):
                why[j] = "signals of one colour only" if h[j] + c[j] else "no signal"
        table["field"] += [i] * n
        table["x"] += np.round(f.nuclei.xy[:, 0], 1).tolist()
        table["y"] += np.round(f.nuclei.xy[:, 1], 1).tolist()
        table["her2"] += h.tolist()
        table["cep17"] += c.tolist()
        table["evaluable"] += [w == "" for w in why]
        table["why_not"] += why
    return {"table": table, "reference": ref, **decide(np.array(table["her2"]), np.array(table["cep17"]),
                                                       np.array(table["evaluable"], bool), guideline)}


def decide(her2: np.ndarray, cep17: np.ndarray, evaluable: np.ndarray, guideline: Guideline) -> dict:
    """Case figures and the ISH call by the guideline's ISH table."""
    t = guideline.ish
    n = int(evaluable.sum())
    out = {"nuclei": n, "her2_per_cell": None, "cep17_per_cell": None, "ratio": None, "group": None,
           "amplified_percent": None, "heterogeneous": False}
    if n == 0:
        return {**out, "call": "no-call", "reasons": ["no evaluable nuclei (none with signals of both colours "
                                                      "that is whole and not overlapping)"],
                "next_step": "count other fields or repeat the ISH"}
    h, c = her2[evaluable], cep17[evaluable]
    mean_h, mean_c = float(h.mean()), float(c.mean())
    ratio = float(h.sum() / c.sum())
    amp = float(100 * np.mean(h / c >= t.ratio_cutoff))
    out.update(her2_per_cell=round(mean_h, 3), cep17_per_cell=round(mean_c, 3), ratio=round(ratio, 3),
               amplified_percent=round(amp, 1), heterogeneous=bool(min(amp, 100 - amp) > 10))
    figures = f"ratio {ratio:.2f}, HER2 {mean_h:.2f}/cell, CEP17 {mean_c:.2f}/cell over {n} nuclei"
    if n < t.min_nuclei:
        return {**out, "call": "no-call",
                "reasons": [f"only {n} evaluable nuclei (at least {t.min_nuclei} needed): {figures}"],
                "next_step": f"count at least {t.min_nuclei} invasive tumour nuclei (more fields)"}
    if t.scheme == "ratio":
        pos = ratio >= t.ratio_cutoff
        return {**out, "call": "positive" if pos else "negative", "next_step": None,
                "reasons": [f"ISH {'positive' if pos else 'negative'} ({guideline.name}): "
                            f"ratio {'>=' if pos else '<'} {t.ratio_cutoff:g}; {figures}"]}
    group = ish_group(mean_h, mean_c, guideline)
    out["group"] = group
    text = {1: ("positive", None), 5: ("negative", None),
            2: ("needs-ihc", "concurrent IHC: 3+ positive; 0/1+ negative with comment; 2+ blinded recount"),
            3: ("needs-ihc", "concurrent IHC: 3+ positive; 0/1+ negative with comment; 2+ recount, still "
                             f">= {t.her2_high:g} positive"),
            4: ("needs-ihc", "concurrent IHC: 3+ positive; 0/1+ negative with comment; 2+ recount, "
                             "still group 4 negative with comment")}[group]
    return {**out, "call": text[0], "next_step": text[1],
            "reasons": [f"ISH group {group} ({guideline.name}): {figures}"]}
