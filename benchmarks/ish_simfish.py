"""Spot detection and cluster counting on images we did not draw: sim-fish (the Big-FISH authors').

    python -m benchmarks.ish_simfish [--images 24] [--per-size 8] [--no-bigfish]

sim-fish (PyPI ``sim-fish``, BSD-3) simulates 2-d spot images with exact
positions: Gaussian spots with random amplitude and sigma over Gaussian
background noise, and clusters whose spots spread around a centre. Every image
draws its PSF sigma (100-300 nm, the 0.1-0.3 um of real FISH), amplitude
spread (+-5% to +-50%, up to a 3x range) and noise level from their whole
range, at 100 nm/px (a 100x objective). Both methods are given the same
nominal PSF (our ``ish.spots.fish_sigma_um``, 0.15 um), never the true one.

Rows:

* isolated spots (no clusters): spot F1 (detections matched one to one within
  0.25 um) for our ``detect_blobs`` and for Big-FISH ``detect_spots``
  (automatic threshold) on the same images;
* one cluster of 5-30 spots among isolated ones: the cluster's count
  estimated (ours: integrated intensity over the image's single-signal
  reference; Big-FISH: ``decompose_dense``), as the median signed and absolute
  relative error per cluster size;
* two-probe cases composed with sim-fish: nuclei, their copies and which are
  evaluable from our generator (groups 1-5, HER2 amplicons as one sim-fish
  cluster per amplified nucleus), every HER2 and CEP17 spot, its PSF,
  amplitude and the camera noise from sim-fish (``simulate_ground_truth`` with
  the nucleus as probability map, ``add_spots``, ``add_white_noise``); 16-bit
  CYX TIFFs counted by ``count_ish`` as a user's files; group agreement, ratio
  error and HER2 / CEP17 per cell against the sim-fish truth;
* time per 1024 x 1024 image of detection and cluster estimation, both
  methods, same run.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy.spatial import cKDTree

from her2path.config import IshConfig
from her2path.io.writers import write_image
from her2path.ish.spots import copies_from_intensity, detect_blobs, single_reference
from her2path.pipeline.ish_case import count_ish
from her2path.rules.ish import ish_group
from her2path.synthetic.ish import IshFieldSpec, render_fish

from .common import bigfish_version, match, print_table, write_results

NM_PER_PX = 100.0
MPP = NM_PER_PX / 1000
SIZES = (5, 10, 15, 20, 30)
SEEDS = {"isolated": 1000, "clusters": 2000, "speed": 3000, "composed": 4000}


def simulate(seed: int, shape=(256, 256), n_isolated: int = 40, cluster: int = 0):
    """One sim-fish image with nuisances drawn from their range; (image uint16, truth yx, cluster rows)."""
    import simfish

    rng = np.random.default_rng(seed)
    np.random.seed(seed)                          # sim-fish draws from numpy's global generator
    sigma = float(rng.uniform(100, 300))
    image, truth = simfish.simulate_image(
        ndim=2, n_spots=n_isolated + cluster, n_clusters=1 if cluster else 0, n_spots_cluster=cluster,
        centered_cluster=bool(cluster), image_shape=shape, voxel_size=(NM_PER_PX, NM_PER_PX),
        sigma=(sigma, sigma), random_sigma=0.05, amplitude=5000.0,
        random_amplitude=float(rng.choice([0.05, 0.3, 0.5])), noise_level=float(rng.uniform(200, 800)),
        random_noise=0.05)
    return image, truth[:, :2], cluster, sigma


def ours(image, cfg=IshConfig()):
    """Our blobs and their copies (the single-signal reference from the image's own one-maximum blobs)."""
    b = detect_blobs(image.astype(np.float32), MPP, cfg.spots.fish_sigma_um, cfg.spots.k_noise)
    inside = np.ones(len(b.xy), bool)
    ref = single_reference([b], [inside])
    return b.xy, copies_from_intensity(b.integrated, ref, cfg.spots.cluster_min, cfg.spots.faint, b.separate)


def bigfish(image, decompose: bool):
    """Big-FISH spots (x, y) with its automatic threshold, and after ``decompose_dense``."""
    import bigfish.detection as bf

    radius = (IshConfig().spots.fish_sigma_um * 1000 * np.sqrt(2),) * 2   # Big-FISH: sigma = radius / sqrt(ndim)
    spots = bf.detect_spots(image, threshold=None, voxel_size=(NM_PER_PX, NM_PER_PX), spot_radius=radius)
    dense = spots
    if decompose and len(spots):
        try:
            dense, _, _ = bf.decompose_dense(image, spots, voxel_size=(NM_PER_PX, NM_PER_PX), spot_radius=radius)
        except Exception:          # Big-FISH refuses when it finds no reference spot
            dense = spots
    return spots[:, ::-1].astype(float), dense[:, ::-1].astype(float)


def f1(truth_xy, det_xy, radius_px: float) -> tuple[int, int, int]:
    t, _ = match(truth_xy, det_xy, radius_px)
    return len(t), len(det_xy) - len(t), len(truth_xy) - len(t)


def cluster_estimate(truth_xy, k: int, det_xy, copies) -> int:
    """Copies of the detections whose nearest true spot belongs to the cluster (the first k rows)."""
    if len(det_xy) == 0:
        return 0
    _, j = cKDTree(truth_xy).query(det_xy)
    return int(np.sum(np.asarray(copies)[j < k]))


def composed_field(spec: IshFieldSpec, sigma_nm: float, spread: float, noise: float, folder) -> tuple:
    """One 16-bit CYX field: our nuclei (DAPI) and copies per nucleus, sim-fish spots and noise.

    Returns (path, her2 per nucleus, cep17 per nucleus, evaluable) from the sim-fish truth."""
    import cv2
    import simfish

    f = render_fish(spec)
    t = f.truth
    shape = (spec.height_px, spec.width_px)
    clustered = spec.means()[2]
    her2, cep = np.zeros(len(t.her2), int), np.zeros(len(t.her2), int)
    images = []
    for probe, copies, out in (("her2", t.her2, her2), ("cep17", t.cep17, cep)):
        rows = []
        for i, ((x, y), (a, b), ang) in enumerate(zip(t.nuclei_xy_um, t.nuclei_axes_um, t.nuclei_angle)):
            # sim-fish samples from a probability map over its whole frame: the frame is the nucleus's box
            r = int(a / spec.mpp) + 2
            x0, y0 = int(x / spec.mpp) - r, int(y / spec.mpp) - r
            mask = np.zeros((2 * r, 2 * r), np.float64)
            cv2.ellipse(mask, (r, r), (int(0.8 * a / spec.mpp), int(0.8 * b / spec.mpp)), float(ang), 0, 360, 1.0, -1)
            yy, xx = np.mgrid[y0:y0 + 2 * r, x0:x0 + 2 * r]
            mask *= (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
            k = int(copies[i])
            if mask.sum() < k or k == 0:
                continue
            amplified = probe == "her2" and clustered and k >= 6
            gt = simfish.simulate_ground_truth(
                ndim=2, n_spots=k, n_clusters=int(amplified), n_spots_cluster=k - 2 if amplified else 0,
                frame_shape=mask.shape, voxel_size=(NM_PER_PX, NM_PER_PX), sigma=(sigma_nm, sigma_nm),
                random_sigma=0.05, amplitude=5000.0, random_amplitude=spread, probability_map=mask / mask.sum())
            gt[:, 0] += y0
            gt[:, 1] += x0
            out[i] = len(gt)
            rows.append(gt)
        img = np.zeros(shape, np.uint16)
        if rows:
            img = simfish.add_spots(img, np.concatenate(rows), (NM_PER_PX, NM_PER_PX))
        images.append(simfish.add_white_noise(img, noise, random_noise=0.05))
    stack = np.stack(images + [f.cyx(16)[2]])
    path = write_image(folder / f"f{spec.seed}.tif", stack, spec.mpp)
    return path, her2, cep, t.evaluable & (her2 > 0) & (cep > 0)


def composed_case(seed: int, folder) -> dict:
    """Fields of one composed case pooled to >= 20 evaluable nuclei; our figures against sim-fish's truth."""
    rng = np.random.default_rng(seed)
    np.random.seed(seed)
    group = int(rng.integers(1, 6))
    sigma, spread, noise = float(rng.uniform(100, 300)), float(rng.choice([0.05, 0.3, 0.5])), float(rng.uniform(200, 800))
    paths, h, c = [], [], []
    for j in range(8):
        spec = IshFieldSpec(group=group, seed=seed * 10 + j, layout="isolated")
        p, hh, cc, ev = composed_field(spec, sigma, spread, noise, folder)
        paths.append(p)
        h.append(hh[ev])
        c.append(cc[ev])
        if sum(len(x) for x in h) >= 20:
            break
    h, c = np.concatenate(h), np.concatenate(c)
    truth = {"nuclei": len(h), "her2_per_cell": h.mean(), "cep17_per_cell": c.mean(), "ratio": h.sum() / c.sum(),
             "group": ish_group(h.mean(), c.mean())}
    r = count_ish(paths)
    return {"seed": seed, "sigma_nm": sigma, "spread": spread, "noise": noise, "truth": truth,
            "ours": {"group": r.group, "ratio": r.ratio, "her2_per_cell": r.her2_per_cell,
                     "cep17_per_cell": r.cep17_per_cell, "nuclei": r.nuclei}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=24, help="isolated-spot images")
    ap.add_argument("--per-size", type=int, default=8, help="cluster images per cluster size")
    ap.add_argument("--cases", type=int, default=30, help="composed two-probe cases")
    ap.add_argument("--no-bigfish", action="store_true")
    args = ap.parse_args(argv)
    try:
        import simfish  # noqa: F401
    except ImportError:
        print("sim-fish is not installed: pip install sim-fish==0.2.0 (or make bench)")
        return 2
    with_bf = not args.no_bigfish
    radius = 0.25 / MPP
    iso = {"ours": [0, 0, 0], "bigfish": [0, 0, 0]}
    for s in range(args.images):
        image, truth, _, _ = simulate(SEEDS["isolated"] + s)
        for k, v in zip(range(3), f1(truth[:, ::-1], ours(image)[0], radius)):
            iso["ours"][k] += v
        if with_bf:
            for k, v in zip(range(3), f1(truth[:, ::-1], bigfish(image, False)[0], radius)):
                iso["bigfish"][k] += v
    f1s = {w: 2 * tp / max(2 * tp + fp + fn, 1) for w, (tp, fp, fn) in iso.items() if w == "ours" or with_bf}
    errors = {w: {k: [] for k in SIZES} for w in ("ours", "bigfish")}
    for k in SIZES:
        for s in range(args.per_size):
            image, truth, _, _ = simulate(SEEDS["clusters"] + 100 * k + s, n_isolated=25, cluster=k)
            xy = truth[:, ::-1]
            det, copies = ours(image)
            errors["ours"][k].append((cluster_estimate(xy, k, det, copies) - k) / k)
            if with_bf:
                _, dense = bigfish(image, True)
                errors["bigfish"][k].append((cluster_estimate(xy, k, dense, np.ones(len(dense))) - k) / k)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        composed = [composed_case(SEEDS["composed"] + i, Path(tmp)) for i in range(args.cases)]
    speed = {}
    image, _, _, _ = simulate(SEEDS["speed"], shape=(1024, 1024), n_isolated=300)
    t0 = time.perf_counter()
    ours(image)
    speed["ours"] = time.perf_counter() - t0
    if with_bf:
        t0 = time.perf_counter()
        bigfish(image, True)
        speed["bigfish"] = time.perf_counter() - t0
    who = ["ours"] + (["bigfish"] if with_bf else [])
    print_table(f"sim-fish isolated spots ({args.images} images of 40 spots, sigma 100-300 nm)",
                ["method", "TP", "FP", "FN", "F1"], [[w, *iso[w], f1s[w]] for w in who])
    rows = []
    for k in SIZES:
        row = [k, args.per_size]
        for w in who:
            e = np.array(errors[w][k])
            row += [float(np.median(e)), float(np.median(np.abs(e)))]
        rows.append(row)
    cols = ["cluster spots", "images"] + [f"{w} {m}" for w in who for m in ("median err", "median |err|")]
    print_table("sim-fish clusters: relative count error of the cluster", cols, rows)
    def comp_rows(rows):
        out = []
        for name, rs in [("ALL", rows)] + [(f"group {g}", [r for r in rows if r["truth"]["group"] == g])
                                           for g in range(1, 6)]:
            if not rs:
                continue
            amp = [r for r in rs if r["truth"]["her2_per_cell"] >= 6]
            rel = lambda rr, k: float(np.median([(r["ours"][k] - r["truth"][k]) / r["truth"][k] for r in rr])) \
                if rr else float("nan")  # noqa: E731
            out.append([name, len(rs), float(np.mean([r["ours"]["group"] == r["truth"]["group"] for r in rs])),
                        float(np.median([abs(r["ours"]["ratio"] - r["truth"]["ratio"]) for r in rs
                                         if r["ours"]["ratio"] is not None] or [float("nan")])),
                        rel(amp, "her2_per_cell"), rel(rs, "cep17_per_cell")])
        return out
    comp_table = comp_rows(composed)
    print_table(f"two-probe fields with sim-fish spots over our nuclei ({args.cases} cases, 16-bit TIFF)",
                ["rows", "cases", "group agree", "ratio |err|", "HER2/cell err (amplified, signed)",
                 "CEP17/cell err (signed)"], comp_table)
    print("time per 1024 x 1024 image (detection + cluster estimate): "
          + ", ".join(f"{w} {speed[w]:.2f} s" for w in who)
          + (f"; Big-FISH / ours = {speed['bigfish'] / speed['ours']:.1f}x" if with_bf else ""))
    path = write_results("ish_simfish", {
        "bigfish": bigfish_version() if with_bf else None,
        "isolated": {w: {"tp": iso[w][0], "fp": iso[w][1], "fn": iso[w][2], "f1": f1s[w]} for w in who},
        "clusters": {w: {str(k): {"median_error": float(np.median(errors[w][k])),
                                  "median_abs_error": float(np.median(np.abs(errors[w][k]))),
                                  "errors": [round(float(v), 4) for v in errors[w][k]]} for k in SIZES}
                     for w in who},
        "composed": {"summary": {r[0]: dict(zip(["cases", "group_agreement", "ratio_median_abs_error",
                                                   "her2_rel_error_amplified", "cep17_rel_error"], r[1:]))
                                 for r in comp_table}, "cases": composed},
        "seconds_per_1024_image": speed})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
