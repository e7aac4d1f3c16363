"""FISH and brightfield dual-ISH counting against generator truth, side by side with Big-FISH.

    python -m benchmarks.ish_accuracy [--no-bigfish]

Cases are written to disk (RGB PNG 8-bit, RGB JPEG q92, CYX TIFF 16- and
8-bit; brightfield PNG and JPEG q90) and counted through ``count_ish``
exactly as a user's files would be. Seeds (2000+) are used nowhere else.

Big-FISH 0.6.2 (``pip install big-fish==0.6.2``, or ``make bench``) runs on
the same channel arrays: ``detect_spots`` (automatic threshold) then
``decompose_dense`` per probe, given our nuclei (its segmentation module does
not import with current scikit-image); its spots are counted per nucleus and
the case is decided by the same guideline code, so only spot finding differs.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import warnings

import numpy as np

from her2path.rules.ish import ish_decision, ish_group
from her2path.rules.tables import load_guideline
from her2path.io.fluorescence import read_fluorescence
from her2path.io.writers import write_image
from her2path.config import IshConfig
from her2path.ish.count import analyse_field
from her2path.ish.spots import copies_from_intensity, single_reference
from her2path.pipeline.ish_case import count_ish

FISH_SIGMA_UM = IshConfig().spots.fish_sigma_um
from her2path.synthetic.ish import IshFieldSpec, render_brightfield, render_fish

from .common import bigfish_version, match, print_table, write_results

FORMATS = ("png8", "jpeg", "tiff16", "tiff8")
MATCH_PX = 2.0
CLUSTER_ZONE_UM = 1.0   # detections this close to a true cluster member are not single spots


def cases():
    """(row, group, layout, format, n_fields, seed, brightfield): 40 FISH and 20 brightfield cases.

    Crowded sections have few evaluable nuclei per field, so their cases pool 5 fields.
    """
    out = []
    for g in (1, 2, 3, 4, 5):
        for i in range(8):
            layout = "crowded" if i % 2 else "isolated"
            out.append((f"FISH {layout}", g, layout, FORMATS[i // 2], 5 if layout == "crowded" else 2,
                        2000 + 100 * g + 10 * i, False))
        for i in range(4):
            layout = "crowded" if i % 2 else "isolated"
            out.append((f"brightfield {layout}", g, layout, ("png8", "jpeg")[i // 2], 5 if i % 2 else 2,
                        3000 + 100 * g + 10 * i, True))
    return out


def write_field(field, fmt: str, path: Path) -> Path:
    if fmt == "jpeg":
        path = path.with_suffix(".jpg")
        path.write_bytes(field.jpeg(90 if field.brightfield else 92))
    elif fmt == "png8":
        path = write_image(path.with_suffix(".png"), field.rgb8(), field.mpp)
    else:
        path = write_image(path.with_suffix(".tif"), field.cyx(16 if fmt == "tiff16" else 8), field.mpp)
    return path


def truth_figures(truths) -> dict:
    h = sum(int(t.her2[t.evaluable].sum()) for t in truths)
    c = sum(int(t.cep17[t.evaluable].sum()) for t in truths)
    n = sum(int(t.evaluable.sum()) for t in truths)
    return {"nuclei": n, "her2_per_cell": h / n, "cep17_per_cell": c / n, "ratio": h / c,
            "group": ish_group(h / n, c / n)}


def single_spots(truth, mpp):
    """Truth positions (px) of separate signals, both probes, and of cluster members."""
    px = lambda a: a / mpp - 0.5  # noqa: E731  (generator places spot centres at pixel centres)
    single = np.r_[px(truth.her2_spots_um[truth.her2_cluster < 0]), px(truth.cep17_spots_um)]
    return single, px(truth.her2_spots_um[truth.her2_cluster >= 0])


def f1_counts(single_xy, cluster_xy, det_xy, mask, mpp) -> tuple[int, int, int]:
    """(true positives, truth spots, detections) on separate signals inside nuclei."""
    def inside(xy):
        if len(xy) == 0:
            return np.zeros(0, bool)
        x, y = np.round(xy[:, 0]).astype(int), np.round(xy[:, 1]).astype(int)
        ok = (x >= 0) & (y >= 0) & (x < mask.shape[1]) & (y < mask.shape[0])   # spots of cut nuclei
        ok[ok] = mask[y[ok], x[ok]]
        return ok
    det = det_xy[inside(det_xy)]
    if len(cluster_xy) and len(det):
        d = np.min(np.hypot(*(det[:, None] - cluster_xy[None]).transpose(2, 0, 1)), axis=1)
        det = det[d > CLUSTER_ZONE_UM / mpp]
    tru = single_xy[inside(single_xy)]
    ti, _ = match(tru, det, MATCH_PX)
    return len(ti), len(tru), len(det)


def matched_nuclei(table, truths, mpp: float, radius_um: float = 2.0) -> dict:
    """Counting alone, with nucleus selection taken out: our evaluable nuclei matched to
    evaluable true nuclei; the ratio of our counts and of the true counts over the same nuclei."""
    ours_h = ours_c = true_h = true_c = n = exact = 0
    for k, t in enumerate(truths):
        sel = [i for i, f in enumerate(table.field) if f == k and table.evaluable[i]]
        if not sel:
            continue
        xy = np.c_[[table.x[i] for i in sel], [table.y[i] for i in sel]]
        ti, pi = match(t.nuclei_xy_um / mpp - 0.5, xy, radius_um / mpp)
        for a, b in zip(ti, pi):
            if not t.evaluable[a]:
                continue
            i = sel[b]
            ours_h, ours_c = ours_h + table.her2[i], ours_c + table.cep17[i]
            true_h, true_c = true_h + int(t.her2[a]), true_c + int(t.cep17[a])
            exact += int(table.her2[i] == t.her2[a] and table.cep17[i] == t.cep17[a])
            n += 1
    return {"nuclei": n, "ratio_ours": ours_h / ours_c if ours_c else None,
            "ratio_truth": true_h / true_c if true_c else None, "exact_counts": exact / n if n else None,
            "group_truth": ish_group(true_h / n, true_c / n) if n else None}


def bigfish_field(ch: dict, nuclei, mpp: float, k_noise: float = 6.0) -> dict:
    """Big-FISH detect_spots + decompose_dense per probe; copies per nucleus from its spots.

    Its automatic threshold (elbow of the spot-count curve) lands in the noise
    on these fields (about 1,400 spots for 90 true ones), so it is given the
    threshold we use, ``k_noise`` times the noise of its own LoG image inside
    the nuclei; that step is not timed.
    """
    import bigfish.detection as bf
    import bigfish.stack as bst

    voxel = (mpp * 1000, mpp * 1000)
    radius = (FISH_SIGMA_UM * 1000 * np.sqrt(2),) * 2   # Big-FISH: sigma = radius / sqrt(ndim)
    images = {p: np.round(ch[p] * 65535).astype(np.uint16) for p in ("her2", "cep17")}
    mask = nuclei.labels > 0
    # Big-FISH clips the LoG at 0: for noise centred on 0 the 84th percentile is one sigma.
    thr = {p: k_noise * max(float(np.percentile(bst.log_filter(img, radius[0] / voxel[0] / np.sqrt(2))[mask], 84.13)),
                            1.0) for p, img in images.items()}
    out, t0 = {}, time.perf_counter()
    for probe, img in images.items():
        spots = bf.detect_spots(img, threshold=thr[probe], voxel_size=voxel, spot_radius=radius)
        try:
            dense, _, _ = bf.decompose_dense(img, spots, voxel_size=voxel, spot_radius=radius)
        except Exception:   # Big-FISH refuses to decompose when it finds no reference spots
            dense = spots
        out[probe] = (spots, dense)
    seconds = time.perf_counter() - t0
    n = len(nuclei.xy)
    counts = {}
    for probe, (_, dense) in out.items():
        owner = nuclei.labels[dense[:, 0], dense[:, 1]] if len(dense) else np.zeros(0, int)
        counts[probe] = np.bincount(owner[owner > 0] - 1, minlength=n)
    return {"counts": counts, "spots_xy": {p: s[:, ::-1].astype(float) for p, (s, _) in out.items()},
            "seconds": seconds}


def run_case(case, tmp: Path, guideline, with_bigfish: bool) -> dict:
    row, group, layout, fmt, n_fields, seed, brightfield = case
    render = render_brightfield if brightfield else render_fish
    fields = [render(IshFieldSpec(group=group, layout=layout, seed=seed + k)) for k in range(n_fields)]
    paths = [write_field(f, fmt, tmp / f"case{seed}_{k}") for k, f in enumerate(fields)]
    t0 = time.perf_counter()
    r = count_ish(paths, brightfield=brightfield, guideline=guideline)
    seconds = time.perf_counter() - t0
    truth = truth_figures([f.truth for f in fields])
    res = {"row": row, "seed": seed, "format": fmt, "fields": n_fields, "truth": truth,
           "ours": {k: getattr(r, k) for k in ("nuclei", "her2_per_cell", "cep17_per_cell", "ratio", "group")},
           "ours_s_per_field": seconds / n_fields, "clustered": group in (1, 3),
           "matched": matched_nuclei(r.table, [f.truth for f in fields], fields[0].mpp)}
    if brightfield:
        return res
    # Spot-level comparison on the very arrays count_ish reads.
    tp = {"ours": [0, 0, 0], "bigfish": [0, 0, 0]}
    bf_h, bf_c, bf_ev, det_s, bf_s = [], [], [], 0.0, 0.0
    for f, p in zip(fields, paths):
        fl = read_fluorescence(p)
        ch = {"nuclear": fl.channels["dapi"], "her2": fl.channels["her2"], "cep17": fl.channels["cep17"]}
        t1 = time.perf_counter()
        sig = analyse_field(ch, fl.mpp)
        det_s += time.perf_counter() - t1
        single, clus = single_spots(f.truth, f.mpp)
        mask = sig.nuclei.labels > 0
        ours_xy = []
        for probe in ("her2", "cep17"):
            b = getattr(sig, probe)
            ref = single_reference([b], [np.ones(len(b.xy), bool)])
            ours_xy.append(b.xy[copies_from_intensity(b.integrated, ref) == 1])
        for k, v in zip(range(3), f1_counts(single, clus, np.concatenate(ours_xy), mask, f.mpp)):
            tp["ours"][k] += v
        if with_bigfish:
            b = bigfish_field(ch, sig.nuclei, fl.mpp)
            bf_s += b["seconds"]
            det = np.concatenate([b["spots_xy"]["her2"], b["spots_xy"]["cep17"]])
            for k, v in zip(range(3), f1_counts(single, clus, det, mask, f.mpp)):
                tp["bigfish"][k] += v
            bf_h.append(b["counts"]["her2"])
            bf_c.append(b["counts"]["cep17"])
            bf_ev.append(sig.nuclei.evaluable & (b["counts"]["her2"] > 0) & (b["counts"]["cep17"] > 0))
    res["ours_analysis_s_per_field"] = det_s / n_fields
    res["spots"] = tp
    if with_bigfish:
        d = ish_decision(np.concatenate(bf_h), np.concatenate(bf_c), np.concatenate(bf_ev), guideline)
        res["bigfish"] = {k: getattr(d, k) for k in ("nuclei", "her2_per_cell", "cep17_per_cell", "ratio", "group")}
        res["bigfish_s_per_field"] = bf_s / n_fields
    return res


def summarise(rows: list[dict], who: str) -> dict:
    got = [r[who] for r in rows if who in r]
    if not got:
        return {}
    truth = [r["truth"] for r in rows if who in r]
    ratio_err = [abs(g["ratio"] - t["ratio"]) if g["ratio"] is not None else np.inf for g, t in zip(got, truth)]
    clus = [abs(g["her2_per_cell"] - t["her2_per_cell"]) / t["her2_per_cell"]
            for g, t, r in zip(got, truth, rows) if r["clustered"] and g["her2_per_cell"] is not None]
    clus_signed = [(g["her2_per_cell"] - t["her2_per_cell"]) / t["her2_per_cell"]
                   for g, t, r in zip(got, truth, rows) if r["clustered"] and g["her2_per_cell"] is not None]
    m = [r["matched"] for r in rows if who == "ours" and r["matched"]["ratio_ours"] is not None]
    err = [abs(x["ratio_ours"] - x["ratio_truth"]) for x in m]
    matched = {"matched_ratio_median_abs_error": float(np.median(err)),
               "matched_exact_counts": float(np.mean([x["exact_counts"] for x in m]))} if m else {}
    out = {**matched, "cases": len(got),
           "group_agreement": float(np.mean([g["group"] == t["group"] for g, t in zip(got, truth)])),
           "ratio_median_abs_error": float(np.median(ratio_err)),
           "clustered_her2_mean_abs_rel_error": float(np.mean(clus)) if clus else None,
           "clustered_her2_worst_rel_error": float(clus_signed[int(np.argmax(clus))]) if clus else None}
    spots = [r["spots"][who] for r in rows if "spots" in r and who in r["spots"]]
    if spots and sum(s[1] for s in spots):
        tp, nt, nd = np.sum(spots, axis=0)
        p, rc = tp / max(nd, 1), tp / max(nt, 1)
        out.update(spot_precision=float(p), spot_recall=float(rc), spot_f1=float(2 * p * rc / max(p + rc, 1e-9)))
    key = {"ours": "ours_s_per_field", "bigfish": "bigfish_s_per_field"}[who]
    out["s_per_field"] = float(np.mean([r[key] for r in rows]))
    if who == "ours" and "ours_analysis_s_per_field" in rows[0]:
        out["analysis_s_per_field"] = float(np.mean([r["ours_analysis_s_per_field"] for r in rows]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-bigfish", action="store_true", help="skip the Big-FISH comparison")
    args = ap.parse_args(argv)
    with_bf = not args.no_bigfish
    if with_bf:
        try:
            import bigfish.detection  # noqa: F401
        except ImportError:
            print("big-fish is not installed: pip install big-fish==0.6.2 (or make bench), or pass --no-bigfish")
            return 2
    warnings.filterwarnings("ignore", category=FutureWarning)   # Big-FISH on scikit-image 0.26
    guideline = load_guideline("breast")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases():
            rows.append(run_case(case, Path(tmp), guideline, with_bf))
            r = rows[-1]
            print(f"{r['row']:22s} {r['format']:6s} seed {r['seed']}: truth g{r['truth']['group']} "
                  f"r{r['truth']['ratio']:.2f} h{r['truth']['her2_per_cell']:.2f} | ours g{r['ours']['group']} "
                  f"r{r['ours']['ratio']} h{r['ours']['her2_per_cell']}"
                  + (f" | big-fish g{r['bigfish']['group']} r{r['bigfish']['ratio']} h{r['bigfish']['her2_per_cell']}"
                     if "bigfish" in r else ""), flush=True)
    groups = {}
    for r in rows:
        groups.setdefault(r["row"], []).append(r)
    fish = [r for r in rows if r["row"].startswith("FISH")]
    for fmt in FORMATS:
        groups[f"FISH {fmt}"] = [r for r in fish if r["format"] == fmt]
    groups["FISH all"] = fish
    groups["brightfield all"] = [r for r in rows if r["row"].startswith("brightfield")]
    summary, table = {}, []
    for name, rs in groups.items():
        for who in ("ours", "bigfish"):
            s = summarise(rs, who)
            if not s:
                continue
            summary[f"{name} / {who}"] = s
            table.append([name, who, s["cases"], s["group_agreement"], s["ratio_median_abs_error"],
                          s.get("matched_ratio_median_abs_error", "-"),
                          s["clustered_her2_mean_abs_rel_error"] if s["clustered_her2_mean_abs_rel_error"]
                          is not None else "-",
                          s.get("spot_f1", "-"), s["s_per_field"], s.get("analysis_s_per_field", "-")])
    print_table("ISH counting vs generator truth (breast groups 1-5; clustered = groups 1 and 3)",
                ["rows", "counter", "cases", "group agree", "ratio med abs err", "same-nuclei ratio err",
                 "clustered HER2 |rel err|",
                 "spot F1 (separate)", "s/field (case)", "s/field (analysis)"], table)
    if with_bf:
        ours, bf = summary["FISH all / ours"], summary["FISH all / bigfish"]
        print(f"Big-FISH detect+decompose time / ours (whole analysis incl. nuclei): "
              f"{bf['s_per_field'] / ours['analysis_s_per_field']:.1f}x")
    path = write_results("ish_accuracy", {"bigfish": bigfish_version() if with_bf else None,
                                          "summary": summary, "cases": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
