"""Per-nucleus ERBB2 and CEP17 counts over a case's fields (the call is ``rules.ish``'s)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from ..config import BrightfieldConfig, IshConfig, IshSpotsConfig
from ..optics import illumination, optical_density
from .nuclei import IshNuclei, segment_nuclei
from .spots import Blobs, copies_from_intensity, detect_blobs, probe_light, single_reference


@dataclass
class FieldSignals:
    nuclei: IshNuclei
    her2: Blobs
    cep17: Blobs
    diameter_px: float   # one signal's diameter: blobs of both colours closer than this are one place
    bleed: float         # share under which a co-located blob is taken for the other colour's echo


BLACK_LEVEL = 2   # 8-bit value at or under which a brightfield camera pixel is black (its limit)


def brightfield_channels(rgb: np.ndarray, cfg: BrightfieldConfig = BrightfieldConfig(),
                         mpp: float = 0.1) -> dict[str, np.ndarray]:
    """Hematoxylin, silver (HER2) and red (CEP17) optical densities of a brightfield dual-ISH field.

    The optical density is taken against the field's own illumination
    (``optics.illumination``, blocks of ``cfg.illumination_block_um``): a
    camera's white balance and a vignetted lamp would otherwise read as stain
    everywhere. Values are signed (noise is measured on them). Under dense
    silver the camera is near black and the colour is lost, so the red image is
    blanked there (``cfg.silver_opaque_od``, plus one pixel): a cluster's edge
    is not taken for CEP17. The hematoxylin under every dot (either dye above
    ``cfg.dot_od``) is filled in from around it.
    """
    m = np.array([cfg.hematoxylin, cfg.silver, cfg.red], float)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    white = illumination(rgb, max(8, int(round(cfg.illumination_block_um / mpp))))
    conc = optical_density(rgb, white).reshape(-1, 3) @ np.linalg.inv(m).astype(np.float32)
    h, silver, red = (conc[:, i].reshape(rgb.shape[:2]) for i in range(3))
    opaque = cv2.dilate((silver > cfg.silver_opaque_od).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    red[opaque] = np.median(red)
    # Under a dot the hematoxylin cannot be read (dense silver leaves no colour to unmix, and both dyes
    # unmix with a dip in it): filled in from around the dot, so that a cluster on a nucleus does not
    # notch its outline and make the amplified nuclei look like overlapping ones.
    dots = cv2.dilate(((silver > cfg.dot_od) | (red > cfg.dot_od)).astype(np.uint8), np.ones((3, 3), np.uint8))
    if dots.any():
        h = cv2.inpaint(np.ascontiguousarray(h, np.float32), dots, 3, cv2.INPAINT_NS)
    return {"nuclear": h, "her2": silver, "cep17": red, "at_limit": rgb.max(axis=2) <= BLACK_LEVEL}


def analyse_field(channels: dict[str, np.ndarray], mpp: float, cfg: IshConfig = IshConfig(),
                  brightfield: bool = False, jpeg: bool = False) -> FieldSignals:
    """Nuclei and the signals of both probes in one field (channels: nuclear, her2, cep17).

    ``jpeg``: the field is a lossy JPEG composite, whose shared chroma makes
    every spot echo in the other colour (``cfg.spots.bleed_jpeg`` applies).
    """
    nc, sc = cfg.nuclei, cfg.spots
    nuclei = segment_nuclei(channels["nuclear"], mpp, nc)
    mask = nuclei.labels > 0
    sigma_um = sc.brightfield_sigma_um if brightfield else sc.fish_sigma_um
    bleed = sc.bleed_jpeg if jpeg else sc.bleed
    light = {p: probe_light(channels[p], mpp, sigma_um, mask) for p in ("her2", "cep17")}
    blobs = {p: detect_blobs(channels[p], mpp, sigma_um, sc.k_noise, mask, at_limit=_at_limit(channels, p, brightfield),
                             light=light[p], other=light[q]) for p, q in (("her2", "cep17"), ("cep17", "her2"))}
    return FieldSignals(nuclei, blobs["her2"], blobs["cep17"], 4 * sigma_um / mpp, bleed)


def _at_limit(channels: dict, probe: str, brightfield: bool) -> np.ndarray | None:
    """Pixels of ``probe`` where the camera reached its limit: black in a brightfield photograph
    (``brightfield_channels``), within 0.2% of full scale in fluorescence read on a 0-1 scale (float
    data beyond 1 has no known full scale: None)."""
    if brightfield:
        return channels.get("at_limit")
    img = channels[probe]
    return None if float(img.max()) > 1.0 else img >= 0.998


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


def _reference_blobs(counted: list[np.ndarray], lone: list[np.ndarray], outshining: list[np.ndarray],
                     clear: list[np.ndarray], least: int, share: float) -> list[np.ndarray]:
    """The blobs the single-signal reference is taken from: the counted blobs that stand clear of
    the noise (band-pass peak ``spots.reference_snr`` x the detection threshold) and have no blob
    of the other colour beside them (``lone``), while they are at least ``least`` and ``share`` of
    the clear ones (``spots.reference_min_blobs``, ``spots.reference_lone_share``); else those that
    outshine the blob beside them as a signal outshines its echo (``outshining``); else the nearest
    looser set with ``least`` of them.

    Echoes (bleed-through, JPEG colour fringes around dark dots) sit on signals of the other
    colour, and JPEG block artefacts barely pass the threshold; either can outnumber the real
    signals and would otherwise set the reference to their own faint light. Where strong cross-talk
    makes every signal echo, the few lone blobs are odd ones (cut, dim), and the signals that
    outshine their echoes are the typical ones."""
    total = sum(int((c & s).sum()) for c, s in zip(counted, clear))
    alone = [c & k & s for c, k, s in zip(counted, lone, clear)]
    if sum(int(a.sum()) for a in alone) >= max(least, share * total):
        return alone
    for choice in ([c & (k | o) & s for c, k, o, s in zip(counted, lone, outshining, clear)],
                   [c & s for c, s in zip(counted, clear)]):
        if sum(int(a.sum()) for a in choice) >= least:
            return choice
    return counted


def _partners(f: FieldSignals, i: np.ndarray, j: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per probe: (lone, outshining) blobs. Lone: no blob of the other colour beside it.
    Outshining: its light is at least 1 / ``bleed`` times that of the blob beside it (which is then
    its echo)."""
    h_lone = ~np.isin(np.arange(len(f.her2.xy)), i)
    c_lone = ~np.isin(np.arange(len(f.cep17.xy)), j)
    h_out, c_out = np.zeros(len(f.her2.xy), bool), np.zeros(len(f.cep17.xy), bool)
    hi, ci = f.her2.integrated[i], f.cep17.integrated[j]
    h_out[i[hi * f.bleed >= ci]] = True
    c_out[j[ci * f.bleed >= hi]] = True
    return {"her2": (h_lone, h_out), "cep17": (c_lone, c_out)}


def _copies(fields: list[FieldSignals], spots: IshSpotsConfig, rounds: int = 3) -> tuple[dict, list]:
    """Single-signal references and the copies of every blob, bleed-through removed.

    One spot seen in both colours (channel cross-talk, or a JPEG composite's
    shared chroma) is kept in the colour where it is bright and dropped in the
    one where it is under ``bleed`` of that (``spots.bleed``; ``spots.bleed_jpeg``
    for JPEG composites), both in single-signal units, compared at the blob's
    brightest pixel (``Blobs.peak_light``, ``other_light``): an echo peaks
    where its source does, while a signal beside an amplicon cluster peaks on
    the cluster's tail, not on the cluster. As bleed-through can outnumber
    real signals, the first references are taken from clear blobs free of the
    other colour (``_reference_blobs``); the later rounds take them from the
    clear in-nucleus blobs the round before counted as one signal each (while
    there are ``spots.reference_min_blobs`` of them). Those
    free of the other colour are a biased few where cross-talk is strong (a
    bright signal's echo is seen, a dim one's is not: they are the dimmer
    ones), while the echoes are gone once the first round has found them and
    the clusters once their light has.
    """
    pairs = [_pairs(f) for f in fields]
    inside = {p: [_owner(getattr(f, p), f.nuclei.labels) > 0 for f in fields] for p in ("her2", "cep17")}
    partners = [_partners(f, i, j) for f, (i, j) in zip(fields, pairs)]
    lone = {p: [q[p][0] for q in partners] for p in ("her2", "cep17")}
    outshining = {p: [q[p][1] for q in partners] for p in ("her2", "cep17")}
    clear = {p: [getattr(f, p).peak >= spots.reference_snr for f in fields] for p in ("her2", "cep17")}
    counted = {p: [m.copy() for m in inside[p]] for p in inside}
    previous: dict[str, list[np.ndarray]] = {}
    for _ in range(rounds):
        ref = {}
        for p in inside:
            chosen = [c & s & (n == 1) for c, s, n in zip(counted[p], clear[p], previous[p])] if previous else []
            if sum(int(m.sum()) for m in chosen) < spots.reference_min_blobs:
                chosen = _reference_blobs(counted[p], lone[p], outshining[p], clear[p], spots.reference_min_blobs,
                                          spots.reference_lone_share)
            ref[p] = single_reference([getattr(f, p) for f in fields], chosen)
        copies = []
        for f in fields:
            h = copies_from_intensity(f.her2.integrated, ref["her2"], spots.cluster_min, spots.faint, f.her2.separate)
            c = copies_from_intensity(f.cep17.integrated, ref["cep17"], spots.cluster_min, spots.faint,
                                      f.cep17.separate)
            if ref["her2"] > 0 and ref["cep17"] > 0:
                h[f.her2.peak_light / ref["her2"] < f.bleed * f.her2.other_light / ref["cep17"]] = 0
                c[f.cep17.peak_light / ref["cep17"] < f.bleed * f.cep17.other_light / ref["her2"]] = 0
            copies.append((h, c))
        previous = {"her2": [h for h, _ in copies], "cep17": [c for _, c in copies]}
        counted = {"her2": [m & (h > 0) for m, (h, _) in zip(inside["her2"], copies)],
                   "cep17": [m & (c > 0) for m, (_, c) in zip(inside["cep17"], copies)]}
    return ref, copies


@dataclass
class CaseCounts:
    """Every nucleus of a case's fields with its counts, and the single-signal references."""

    table: dict[str, list]           # columns of schema.NucleusTable
    reference: dict[str, float]      # integrated intensity of one signal, per probe
    saturated: dict[str, int]        # clusters (>= 2 copies) in evaluable nuclei at the camera's limit
    copies: list[tuple[np.ndarray, np.ndarray]]   # per field: copies of each HER2 and CEP17 blob (0: not counted)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(HER2, CEP17, evaluable) per nucleus as arrays."""
        t = self.table
        return np.array(t["her2"], int), np.array(t["cep17"], int), np.array(t["evaluable"], bool)


def count_case(fields: list[FieldSignals], cfg: IshConfig = IshConfig()) -> CaseCounts:
    """Pool the fields: copies per nucleus (clusters estimated, bleed-through removed), and
    which nuclei are evaluable (whole, not overlapping, signals of both colours)."""
    ref, copies = _copies(fields, cfg.spots)
    table = {k: [] for k in ("field", "x", "y", "her2", "cep17", "evaluable", "why_not")}
    saturated = {"her2": 0, "cep17": 0}
    for i, (f, (hc, cc)) in enumerate(zip(fields, copies)):
        n = len(f.nuclei.xy)
        h = _counts(f.her2, hc, f.nuclei.labels, n)
        c = _counts(f.cep17, cc, f.nuclei.labels, n)
        why = list(f.nuclei.why_not)
        for j in range(n):
            if not why[j] and (h[j] == 0 or c[j] == 0):
                why[j] = "signals of one colour only" if h[j] + c[j] else "no signal"
        for probe, blobs, k in (("her2", f.her2, hc), ("cep17", f.cep17, cc)):
            if blobs.saturated is not None and len(blobs.xy):
                owner = _owner(blobs, f.nuclei.labels)
                good = np.array([o > 0 and not why[o - 1] for o in owner], bool)
                saturated[probe] += int(np.sum(blobs.saturated & (k >= 2) & good))
        table["field"] += [i] * n
        table["x"] += np.round(f.nuclei.xy[:, 0], 1).tolist()
        table["y"] += np.round(f.nuclei.xy[:, 1], 1).tolist()
        table["her2"] += h.tolist()
        table["cep17"] += c.tolist()
        table["evaluable"] += [w == "" for w in why]
        table["why_not"] += why
    return CaseCounts(table, ref, saturated, copies)
