"""``count_ish``: the FISH or brightfield dual-ISH fields of one case, end to end."""
from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from .._version import SOFTWARE
from ..config import IshConfig, Settings, load_settings
from ..errors import InputError, MppError
from ..io.fluorescence import DEFAULT_CHANNELS, read_fluorescence
from ..io.slide import MPP_FIX, open_image, sniff_format
from ..io.writers import atomic_write_bytes, write_image
from ..ish.count import analyse_field, brightfield_channels, count_case
from ..provenance import digest_files, digest_model
from ..rules.flags import ish_warnings
from ..rules.ish import ish_decision
from ..rules.tables import Guideline, load_guideline
from ..schema import IshResult, NucleusTable, Provenance
from .layout import IshLayout


def _expand(inputs) -> list[Path]:
    """Files given, with folders replaced by the image files in them (sorted)."""
    out = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in (".tif", ".tiff", ".png", ".jpg", ".jpeg"))
            if not found:
                raise InputError("folder holds no TIFF, PNG or JPEG fields", p, "give the field images")
            out += found
        else:
            out.append(p)
    return out


def _load(path: Path, channels, mpp, brightfield, cfg: IshConfig, force_mpp: bool) -> tuple[dict, float, np.ndarray]:
    """Channels (nuclear, her2, cep17), um/px and an RGB view for the overlay."""
    if brightfield:
        img = open_image(path, mpp=mpp, force_mpp=force_mpp)
        rgb = img.read_region(0, 0, 0, *img.dimensions)
        return brightfield_channels(rgb, cfg.brightfield, img.mpp), img.mpp, rgb
    f = read_fluorescence(path, channels, mpp, force_mpp)
    if f.mpp is None:
        raise MppError("pixel size (mpp) unknown: the file's metadata does not give it", path,
                       MPP_FIX.replace("0.5 for a 20x scan, 0.25 for 40x", "0.1 for a 63x FISH field"))
    ch = {"nuclear": f.channels["dapi"], "her2": f.channels["her2"], "cep17": f.channels["cep17"]}
    view = np.stack([ch["her2"], ch["cep17"], ch["nuclear"]], -1)
    view = np.clip(view / np.maximum(np.percentile(view, 99.9, axis=(0, 1)), 1e-6) * 255, 0, 255).astype(np.uint8)
    return ch, f.mpp, view


def count_ish(inputs, channels=DEFAULT_CHANNELS, mpp: float | None = None, brightfield: bool = False,
              guideline: str | Guideline = "breast", out: str | Path | None = None,
              settings: Settings | None = None, force_mpp: bool = False) -> IshResult:
    """Count ERBB2 and CEP17 per nucleus over the fields of one case and call it by guideline.

    Parameters
    ----------
    inputs : path or list of paths
        Field images, or folders of them, of one case.
    channels : tuple of str
        Channel order of multichannel TIFFs (RGB composites: red HER2, green CEP17, blue DAPI).
    mpp : float, optional
        Pixel size in um/px, overriding the files' metadata.
    brightfield : bool
        Brightfield dual ISH (black silver HER2, red CEP17 dots, hematoxylin nuclei).
    guideline : str or Guideline
    out : path, optional
        Folder for result.json, nuclei.csv and an overlay per field.
    settings : Settings, optional
        Its ``ish`` section is used (default: configs/default.yaml).
    force_mpp : bool
        Accept an ``mpp`` outside the plausible 0.05-20 um/px.
    """
    cfg = (settings or load_settings()).ish
    table = guideline if isinstance(guideline, Guideline) else load_guideline(guideline)
    paths = _expand([inputs] if isinstance(inputs, (str, Path)) else inputs)
    signals, views, mpps = [], [], []
    for p in paths:
        ch, m, view = _load(p, channels, mpp, brightfield, cfg, force_mpp)
        sig = analyse_field(ch, m, cfg, brightfield, jpeg=sniff_format(p) == "jpeg")
        if len(sig.nuclei.xy) == 0:
            raise InputError("no nuclei found in the field", p,
                             "check the channel order (--channels) or that this is a FISH field")
        signals.append(sig)
        views.append(view)
        mpps.append(m)
    counts = count_case(signals, cfg)
    d = ish_decision(*counts.arrays(), table, fields=len(paths))
    result = IshResult(
        nuclei=d.nuclei, her2_per_cell=d.her2_per_cell, cep17_per_cell=d.cep17_per_cell,
        ratio=d.ratio, group=d.group, call=d.call, reasons=d.reasons, next_step=d.next_step, near_cutoff=d.near_cutoff,
        warnings=ish_warnings(d.heterogeneous, d.amplified_percent, table.ish.ratio_cutoff,
                              table.ish.heterogeneity_percent, counts.saturated, brightfield),
        amplified_percent=d.amplified_percent, heterogeneous=d.heterogeneous, guideline=table.name,
        mpp=float(np.mean(mpps)), brightfield=brightfield, fields=[str(p) for p in paths],
        single_signal={k: round(v, 5) for k, v in counts.reference.items()},
        table=NucleusTable(**counts.table), found=len(counts.table["x"]),
        excluded=dict(Counter(w for w in counts.table["why_not"] if w)), saturated_clusters=counts.saturated,
        provenance=Provenance(software=SOFTWARE, config_sha256=digest_model(cfg),
                              guideline_sha256=digest_model(table), input_path=";".join(map(str, paths)),
                              input_sha256=digest_files(paths), mpp_used=float(np.mean(mpps))))
    if out:
        write_ish_outputs(result, signals, counts.copies, views, Path(out))
    return result


def write_ish_outputs(result: IshResult, signals, copies, views, out: Path) -> None:
    """result.json, nuclei.csv (x, y, her2, cep17, ...) and overlay_N.png per field in ``out``.

    The overlay marks each counted signal with a ring of its probe's colour, a
    cluster with a bold ring and its estimated copies, and each blob not
    counted (the other colour's echo, under a third of a signal, or outside
    every nucleus) with a small grey cross, so that a reviewer sees what was
    counted and what was not.
    """
    lay = IshLayout(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(lay.result, (result.to_json() + "\n").encode())
    t = result.table
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["x", "y", "her2", "cep17", "field", "evaluable", "why_not"])
    for row in zip(t.x, t.y, t.her2, t.cep17, t.field, t.evaluable, t.why_not):
        w.writerow([*row[:5], int(row[5]), row[6]])
    atomic_write_bytes(lay.nuclei_csv, buf.getvalue().encode())
    for i, (sig, view) in enumerate(zip(signals, views)):
        img = view.copy()
        labels = sig.nuclei.labels
        sel = [k for k, f in enumerate(t.field) if f == i]
        for j, k in enumerate(sel):
            m = (labels == j + 1).astype(np.uint8)
            cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(img, cs, -1, (255, 255, 255) if t.evaluable[k] else (120, 120, 120), 1)
            cv2.putText(img, f"{t.her2[k]}/{t.cep17[k]}", (int(t.x[k]) - 14, int(t.y[k]) + 4),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0) if t.evaluable[k] else (150, 150, 150), 1,
                        cv2.LINE_AA)
        for blobs, n_copies, color in ((sig.her2, copies[i][0], HER2_RING), (sig.cep17, copies[i][1], CEP17_RING)):
            for (x, y), c in zip(np.round(blobs.xy).astype(int), n_copies):
                if c == 0 or labels[min(y, labels.shape[0] - 1), min(x, labels.shape[1] - 1)] == 0:
                    cv2.drawMarker(img, (x, y), NOT_COUNTED, cv2.MARKER_TILTED_CROSS, 6, 1)
                elif c == 1:
                    cv2.circle(img, (x, y), 5, color, 1, cv2.LINE_AA)
                else:
                    cv2.circle(img, (x, y), 9, color, 2, cv2.LINE_AA)
                    cv2.putText(img, str(int(c)), (x + 9, y - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
        write_image(lay.overlay(i), _with_key(img, [t.why_not[k] for k in sel], i))


HER2_RING, CEP17_RING, NOT_COUNTED = (255, 60, 60), (60, 255, 60), (180, 180, 180)   # RGB


def _with_key(img: np.ndarray, why_not: list[str], field: int) -> np.ndarray:
    """The overlay with a key below it (never over the nuclei): what the marks mean and, for this
    field, how many nuclei were counted and why the others were not."""
    n, ok = len(why_not), sum(1 for w in why_not if not w)
    reasons = Counter(w for w in why_not if w)
    lines = [(f"field {field + 1}: {ok} of {n} nuclei counted (white outline, HER2/CEP17 copies); "
              "grey: not counted", (255, 255, 255)),
             ((("HER2 signal", HER2_RING), ("CEP17 signal", CEP17_RING),
               ("cluster: bold, with its estimated copies", None)), None),
             ((("not counted: echo of the other colour, too faint or outside nuclei", NOT_COUNTED),), None)]
    lines += [(f"  not counted: {k} ({v})", (150, 150, 150)) for k, v in reasons.most_common()]
    h = 22 * len(lines) + 10
    key = np.full((h, img.shape[1], 3), 30, np.uint8)
    for j, (text, color) in enumerate(lines):
        y = 20 + 22 * j
        if color is None:                         # the colour key: a mark, then what it marks
            x = 14
            for label, ring in text:
                if ring is NOT_COUNTED:
                    cv2.drawMarker(key, (x, y - 5), ring, cv2.MARKER_TILTED_CROSS, 8, 1)
                else:
                    cv2.circle(key, (x, y - 5), 6, ring or (230, 230, 230), 2 if ring is None else 1, cv2.LINE_AA)
                cv2.putText(key, label, (x + 12, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (230, 230, 230), 1, cv2.LINE_AA)
                x += 12 + cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] + 24
            continue
        cv2.putText(key, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return np.vstack([img, key])
