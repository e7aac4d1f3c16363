"""Synthetic dual-probe ISH fields with exact per-nucleus counts: FISH and brightfield dual ISH.

One layout (nuclei and the signals in them, in um) is rendered two ways:
fluorescence (DAPI nuclei, ERBB2 and CEP17 spots shaped by a Gaussian
point-spread function, amplicon clusters, debris, background and shot noise)
or brightfield (hematoxylin nuclei, black silver HER2 dots, red CEP17 dots).

Truth per nucleus: centre, HER2 and CEP17 copies, and whether it is
evaluable (whole inside the field, at least 0.5 um from every other nucleus).

Examples
--------
>>> from her2path.synthetic.ish import IshFieldSpec, render_fish
>>> f = render_fish(IshFieldSpec(group=1, seed=0))
>>> f.truth.group
1
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from ..rules.ish import ish_group
from ..io.writers import encode_jpeg

# (mean CEP17 per cell, mean HER2 per cell, amplicon clusters) giving each breast ISH group.
GROUP_PRESETS = {
    1: (2.0, 10.0, True),
    2: (1.4, 3.2, False),
    3: (4.2, 7.2, True),
    4: (3.0, 4.9, False),
    5: (2.0, 2.2, False),
}
CHANNELS = ("her2", "cep17", "dapi")


@dataclass(frozen=True)
class IshFieldSpec:
    """What to render. Lengths in um, resolution in um/px."""

    group: int | None = 5                 # breast ISH group preset; None: use the means below
    her2_mean: float | None = None
    cep17_mean: float | None = None
    clustered: bool | None = None         # HER2 amplicons in tight clusters (preset decides if None)
    width_px: int = 1024
    height_px: int = 1024
    mpp: float = 0.1
    layout: str = "isolated"              # "isolated" nuclei or a "crowded" section with overlaps
    nuclear_radius_um: tuple[float, float] = (4.5, 6.0)
    spot_sigma_um: float = 0.15           # PSF sigma of one signal
    debris: int = 12                      # bright particles outside nuclei
    seed: int = 0
    # Nuisances (``random_ish_spec`` draws them over their range; the defaults are the clean field).
    brightness_spread: float = 0.0        # lognormal sigma of the signal brightness (0.35: a 3x range)
    cluster_sd_um: float = 0.22           # spread of an amplicon cluster's copies around its centre
    cluster_irregular: bool = False       # clusters made of 2-4 elongated lobes instead of one round one
    spacing: float = 2.0                  # fewest signal diameters (4 sigma) between separate signals; down to
                                          #   1, signals whose light runs together that the guideline counts two
    autofluorescence: float = 0.0         # smooth background light in the signal channels (FISH)
    out_of_focus: int = 0                 # blurred nuclei of another focal plane (no countable signals)
    bleed: float = 0.0                    # share of each signal channel seen in the other (FISH)
    exposure: float = 1.0                 # signal brightness scale (FISH): one signal at 14-20% of full scale;
                                          #   dense clusters reach it at 1, most clusters above ~3
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)   # camera gains R, G, B (brightfield)
    vignetting: float = 0.0               # light lost towards the corners (brightfield, 0-1)
    hematoxylin: float = 1.0              # counterstain strength (brightfield; 0.3 is pale)

    def means(self) -> tuple[float, float, bool]:
        if self.group is not None:
            cep, her2, clus = GROUP_PRESETS[self.group]
        else:
            cep, her2, clus = self.cep17_mean, self.her2_mean, bool(self.her2_mean and self.her2_mean >= 6)
        return cep, her2, clus if self.clustered is None else self.clustered


@dataclass
class IshTruth:
    nuclei_xy_um: np.ndarray   # (n, 2) centres
    nuclei_axes_um: np.ndarray  # (n, 2) semi-axes
    nuclei_angle: np.ndarray   # (n,) degrees
    her2: np.ndarray           # (n,) copies per nucleus
    cep17: np.ndarray          # (n,)
    evaluable: np.ndarray      # (n,) bool
    her2_spots_um: np.ndarray  # (k, 2) every HER2 copy (cluster members included)
    her2_cluster: np.ndarray   # (k,) cluster id, -1 for a separate signal
    cep17_spots_um: np.ndarray

    @property
    def her2_per_cell(self) -> float:
        return float(self.her2[self.evaluable].mean())

    @property
    def cep17_per_cell(self) -> float:
        return float(self.cep17[self.evaluable].mean())

    @property
    def ratio(self) -> float:
        return float(self.her2[self.evaluable].sum() / self.cep17[self.evaluable].sum())

    @property
    def group(self) -> int | None:
        return ish_group(self.her2_per_cell, self.cep17_per_cell)


@dataclass
class IshField:
    image: np.ndarray          # fluorescence: (3, H, W) float32 0-1 in CHANNELS order; brightfield: (H, W, 3) uint8
    mpp: float
    truth: IshTruth
    brightfield: bool

    def rgb8(self) -> np.ndarray:
        """RGB composite (red = HER2, green = CEP17, blue = DAPI) or the brightfield RGB."""
        if self.brightfield:
            return self.image
        return np.clip(np.round(np.moveaxis(self.image, 0, -1) * 255), 0, 255).astype(np.uint8)

    def cyx(self, bits: int = 16) -> np.ndarray:
        """Channel-first stack in CHANNELS order at 8 or 16 bits."""
        top = (1 << bits) - 1
        return np.clip(np.round(self.image * top), 0, top).astype(np.uint8 if bits == 8 else np.uint16)

    def jpeg(self, quality: int = 92) -> bytes:
        return encode_jpeg(self.rgb8(), quality, self.mpp)


def _place_nuclei(rng, spec: IshFieldSpec):
    W, H = spec.width_px * spec.mpp, spec.height_px * spec.mpp
    r0, r1 = spec.nuclear_radius_um
    crowded = spec.layout == "crowded"
    centres, axes = [], []
    tries = 0
    target = int(W * H / (np.pi * r1 * r1) * (0.75 if crowded else 0.45))
    while len(centres) < target and tries < 20000:
        tries += 1
        a = rng.uniform(r0, r1)
        ax = (a, a * rng.uniform(0.75, 0.95))
        c = rng.uniform([-0.3 * a, -0.3 * a], [W + 0.3 * a, H + 0.3 * a])
        ok = True
        for c2, ax2 in zip(centres, axes):
            d = np.hypot(*(c - c2))
            gap = ax[0] + ax2[0]
            if d < (0.55 * gap if crowded else gap + 1.5):
                ok = False
                break
        if ok:
            centres.append(c)
            axes.append(ax)
    centres, axes = np.array(centres), np.array(axes)
    angle = rng.uniform(0, 180, len(centres))
    return centres, axes, angle, _whole_and_clear(centres, axes, angle, spec)


CLEAR_GAP_UM = 0.5   # least gap to the next nucleus for a clear border (nuclei closer blur into one outline)


def _whole_and_clear(centres, axes, angle, spec: IshFieldSpec) -> np.ndarray:
    """Which nuclei a technologist would count: the drawn ellipse lies whole inside the field (0.5 um
    margin), and no other nucleus comes within ``CLEAR_GAP_UM`` of it (overlapping and touching
    nuclei have no clear border). Tested on the ellipses themselves, rasterised at 0.05 um: an
    ellipse's circumscribed circle would call nuclei a micrometre apart overlapping."""
    t = np.deg2rad(angle)
    a, b = axes[:, 0], axes[:, 1]
    half_w = np.hypot(a * np.cos(t), b * np.sin(t))
    half_h = np.hypot(a * np.sin(t), b * np.cos(t))
    W, H = spec.width_px * spec.mpp, spec.height_px * spec.mpp
    inside = ((centres[:, 0] - half_w > 0.5) & (centres[:, 0] + half_w < W - 0.5)
              & (centres[:, 1] - half_h > 0.5) & (centres[:, 1] + half_h < H - 0.5))
    step, grow = 0.05, CLEAR_GAP_UM / 2          # each ellipse grown by half the gap: grown ones meet
    pad = 2 * (float(a.max()) + grow) + 1 if len(a) else 1.0   # centres lie up to 0.3 a outside the field
    count = np.zeros((int((H + 2 * pad) / step) + 1, int((W + 2 * pad) / step) + 1), np.uint8)
    drawn = []
    for (x, y), (ai, bi), ang in zip(centres, axes, angle):
        r = int((ai + grow) / step) + 2              # drawn in its bounding box
        x0, y0 = int((x + pad) / step) - r, int((y + pad) / step) - r
        one = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
        cv2.ellipse(one, (int(round((x + pad) / step)) - x0, int(round((y + pad) / step)) - y0),
                    (int(round((ai + grow) / step)), int(round((bi + grow) / step))), float(ang), 0, 360, 1, -1)
        box = np.s_[y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1]
        count[box] += one
        drawn.append((box, one > 0))
    clear = np.array([count[box][m].max() == 1 for box, m in drawn], bool)
    return inside & clear


def _in_nucleus(p, c, ax, ang, shrink=0.8):
    t = np.deg2rad(ang)
    dx, dy = p[0] - c[0], p[1] - c[1]
    u = dx * np.cos(t) + dy * np.sin(t)
    v = -dx * np.sin(t) + dy * np.cos(t)
    return (u / (ax[0] * shrink)) ** 2 + (v / (ax[1] * shrink)) ** 2 <= 1


def _spots_in(rng, n, c, ax, ang, min_dist, taken):
    """n positions inside a nucleus at least ``min_dist`` um from each other and from ``taken``."""
    out = []
    for _ in range(n * 200):
        if len(out) == n:
            break
        p = c + rng.uniform(-ax[0], ax[0], 2)
        if not _in_nucleus(p, c, ax, ang):
            continue
        if all(np.hypot(*(p - q)) >= min_dist for q in out + taken):
            out.append(p)
    return out


def _cluster_offsets(rng, n: int, sd_um: float, irregular: bool) -> np.ndarray:
    """Positions (um) of an amplicon cluster's copies around its centre: one round cloud, or 2-4
    elongated lobes (the irregular clusters of real amplified nuclei)."""
    if not irregular:
        return rng.normal(0, sd_um, (n, 2))
    lobes = rng.integers(2, 5)
    centre = rng.normal(0, sd_um, (lobes, 2))
    which = rng.integers(0, lobes, n)
    ang = rng.uniform(0, np.pi, lobes)[which]
    along, across = rng.normal(0, sd_um, n), rng.normal(0, 0.35 * sd_um, n)
    return centre[which] + np.c_[along * np.cos(ang) - across * np.sin(ang), along * np.sin(ang) + across * np.cos(ang)]


def _layout(spec: IshFieldSpec, dot_sigma_um: float):
    """Nuclei and signal positions in um, retried until the case falls in the preset's group.

    Separate signals lie at least ``spec.spacing`` diameters apart, a diameter
    being 4 sigma of the dot as drawn (``dot_sigma_um``): signals closer than
    one diameter are one signal by the guideline's rule, so the truth never
    holds such a pair."""
    cep_mean, her2_mean, clustered = spec.means()
    rng = np.random.default_rng(spec.seed)
    for _ in range(50):
        centres, axes, angle, evaluable = _place_nuclei(rng, spec)
        n = len(centres)
        cep = 1 + rng.poisson(max(cep_mean - 1, 0), n)
        her2 = 1 + rng.poisson(max(her2_mean - 1, 0), n)
        truth_group = ish_group(her2[evaluable].mean(), cep[evaluable].mean()) if evaluable.any() else None
        if spec.group is None or truth_group == spec.group:
            break
    diam = 2 * 2.0 * dot_sigma_um  # one signal diameter (FWHM ~ 2.35 sigma, with margin)
    h_pts, h_clu, c_pts = [], [], []
    cluster_id = 0
    for i in range(n):
        c, ax, ang = centres[i], axes[i], angle[i]
        k = her2[i]
        singles = k
        if clustered and k >= 6:
            n_clu = 1 + int(k >= 14)
            per = (k - 2) // n_clu  # keep two separate signals beside the clusters
            for cc in _spots_in(rng, n_clu, c, ax, ang, 3 * diam, []):
                members = cc + _cluster_offsets(rng, per, spec.cluster_sd_um, spec.cluster_irregular)
                h_pts.extend(members)
                h_clu.extend([cluster_id] * per)
                cluster_id += 1
            singles = k - per * n_clu
        taken = list(h_pts[-(k - singles):]) if k > singles else []
        sp = _spots_in(rng, singles, c, ax, ang, spec.spacing * diam, taken)
        if len(sp) < singles:       # nucleus too small for the copies: keep the truth exact
            her2[i] -= singles - len(sp)
        h_pts.extend(sp)
        h_clu.extend([-1] * len(sp))
        cs = _spots_in(rng, cep[i], c, ax, ang, spec.spacing * diam, [])
        cep[i] = len(cs)
        c_pts.extend(cs)
    evaluable &= (cep > 0) & (her2 > 0)
    return IshTruth(centres, axes, angle, her2, cep, evaluable,
                    np.array(h_pts).reshape(-1, 2), np.array(h_clu, int), np.array(c_pts).reshape(-1, 2)), rng


def _nucleus_canvas(spec: IshFieldSpec, truth: IshTruth, rng, values) -> np.ndarray:
    shape = (spec.height_px, spec.width_px)
    out = np.zeros(shape, np.float32)
    s = 16 / spec.mpp                       # cv2 fixed point: 4 fractional bits
    for (x, y), (a, b), ang, v in zip(truth.nuclei_xy_um, truth.nuclei_axes_um, truth.nuclei_angle, values):
        r = a / spec.mpp + 3                # drawn in its bounding box, moved by whole pixels: exact
        x0, y0 = max(0, int(x / spec.mpp - r)), max(0, int(y / spec.mpp - r))
        x1, y1 = min(shape[1], int(x / spec.mpp + r) + 1), min(shape[0], int(y / spec.mpp + r) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        tmp = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.ellipse(tmp, (int(round(x * s)) - 16 * x0, int(round(y * s)) - 16 * y0), (int(a * s), int(b * s)),
                    float(ang), 0, 360, 1, -1, cv2.LINE_AA, 4)
        np.maximum(out[y0:y1, x0:x1], tmp * np.float32(v), out=out[y0:y1, x0:x1])
    texture = 1 + 0.15 * ndi.gaussian_filter(rng.normal(size=shape), 0.5 / spec.mpp) * 4
    return cv2.GaussianBlur(out * texture.astype(np.float32), (0, 0), 0.3 / spec.mpp)


def _spot_canvas(spec: IshFieldSpec, pts_um, amp, sigma_um) -> np.ndarray:
    """Sum of Gaussian spots of peak ``amp`` at sub-pixel positions."""
    shape = (spec.height_px, spec.width_px)
    out = np.zeros(shape, np.float32)
    sig = sigma_um / spec.mpp
    r = int(np.ceil(4 * sig))
    for (x, y), a in zip(pts_um / spec.mpp - 0.5, amp):
        x0, y0 = int(np.floor(x)) - r, int(np.floor(y)) - r
        ys, xs = np.mgrid[y0:y0 + 2 * r + 2, x0:x0 + 2 * r + 2]
        g = a * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sig * sig))
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + 2 * r + 2, shape[0]), min(x0 + 2 * r + 2, shape[1])
        if yb > ya and xb > xa:
            out[ya:yb, xa:xb] += g[ya - y0:yb - y0, xa - x0:xb - x0]
    return out


def render_fish(spec: IshFieldSpec) -> IshField:
    """A fluorescence field: channels HER2 (red), CEP17 (green), DAPI (blue), values 0-1."""
    truth, rng = _layout(spec, spec.spot_sigma_um)
    W, H = spec.width_px * spec.mpp, spec.height_px * spec.mpp
    dapi = _nucleus_canvas(spec, truth, rng, rng.uniform(0.35, 0.6, len(truth.her2)))
    nuclear = dapi > 0.05
    chans = []
    for pts in (truth.her2_spots_um, truth.cep17_spots_um):
        amp = spec.exposure * rng.uniform(0.14, 0.20, len(pts)) * _spread(rng, spec.brightness_spread, len(pts))
        img = _spot_canvas(spec, pts, amp, spec.spot_sigma_um)
        deb = np.c_[rng.uniform(0, W, spec.debris), rng.uniform(0, H, spec.debris)]
        deb_img = _spot_canvas(spec, deb, rng.uniform(0.1, 0.3, spec.debris), 2.2 * spec.spot_sigma_um)
        deb_img[nuclear] = 0   # debris lies on the glass or in the cytoplasm, not in nuclei
        haze = spec.autofluorescence * _haze(rng, spec) if spec.autofluorescence else 0.0
        chans.append(img + deb_img + 0.04 * nuclear + 0.02 + haze)
    if spec.bleed:
        chans = [chans[0] + spec.bleed * chans[1], chans[1] + spec.bleed * chans[0]]
    if spec.out_of_focus:
        dapi = dapi + _out_of_focus(rng, spec)
    image = np.stack(chans + [dapi + 0.02]).astype(np.float32)
    photons = 2000.0  # photoelectrons at full scale
    image = rng.poisson(np.clip(image, 0, None) * photons) / photons + rng.normal(0, 0.004, image.shape)
    return IshField(np.clip(image, 0, 1).astype(np.float32), spec.mpp, truth, brightfield=False)


def _spread(rng, sigma: float, n: int) -> np.ndarray:
    """Brightness factors of ``n`` signals: lognormal with ``sigma`` (1 when 0), median 1."""
    return np.exp(rng.normal(0, sigma, n)) if sigma > 0 else np.ones(n)


def _haze(rng, spec: IshFieldSpec) -> np.ndarray:
    """Smooth autofluorescence (0-1 scale, mean ~0.5): cytoplasm and extracellular matrix."""
    noise = rng.normal(size=(spec.height_px // 16 + 2, spec.width_px // 16 + 2)).astype(np.float32)
    haze = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 2.0), (spec.width_px, spec.height_px), interpolation=cv2.INTER_CUBIC)
    return np.clip(0.5 + 1.5 * haze, 0, 1)


def _out_of_focus(rng, spec: IshFieldSpec) -> np.ndarray:
    """Blurred nuclei of another focal plane, in the DAPI channel only."""
    out = np.zeros((spec.height_px, spec.width_px), np.float32)
    for _ in range(spec.out_of_focus):
        c = (int(rng.uniform(0, spec.width_px)), int(rng.uniform(0, spec.height_px)))
        r = int(rng.uniform(*spec.nuclear_radius_um) / spec.mpp)
        cv2.circle(out, c, r, float(rng.uniform(0.15, 0.3)), -1)
    return cv2.GaussianBlur(out, (0, 0), 2.0 / spec.mpp)


BRIGHTFIELD_DOT_SCALE = 1.4                  # a chromogenic dot is wider than a fluorescent spot: sigma x this
SILVER_OD = np.array([0.58, 0.60, 0.55])     # black silver HER2 dots: neutral absorber
RED_OD = np.array([0.10, 0.75, 0.55])        # Fast Red CEP17 dots: absorb green and blue
HEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])


def render_brightfield(spec: IshFieldSpec, jpeg_quality: int | None = None) -> IshField:
    """A brightfield dual-ISH field (RGB uint8): hematoxylin nuclei, black HER2, red CEP17 dots."""
    sig = BRIGHTFIELD_DOT_SCALE * spec.spot_sigma_um
    truth, rng = _layout(spec, sig)
    hem = _nucleus_canvas(spec, truth, rng, spec.hematoxylin * rng.uniform(0.25, 0.4, len(truth.her2)))
    nh, nc = len(truth.her2_spots_um), len(truth.cep17_spots_um)
    her2 = _spot_canvas(spec, truth.her2_spots_um, rng.uniform(1.0, 1.4, nh) * _spread(rng, spec.brightness_spread, nh),
                        sig)
    cep = _spot_canvas(spec, truth.cep17_spots_um, rng.uniform(0.8, 1.1, nc) * _spread(rng, spec.brightness_spread, nc),
                       sig)
    od = hem[..., None] * HEMATOXYLIN_OD + her2[..., None] * SILVER_OD + cep[..., None] * RED_OD + 0.02
    yy, xx = np.mgrid[0:spec.height_px, 0:spec.width_px]
    r2 = ((xx - spec.width_px / 2) ** 2 + (yy - spec.height_px / 2) ** 2) / (0.5 * np.hypot(spec.width_px, spec.height_px)) ** 2
    lamp = (1 - spec.vignetting * r2)[..., None] * np.asarray(spec.white_balance)
    rgb = 250 * lamp * np.power(10.0, -od) + rng.normal(0, 2.0, od.shape)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    if jpeg_quality:
        data = encode_jpeg(rgb, jpeg_quality)
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return IshField(rgb, spec.mpp, truth, brightfield=True)


# Group targets for ``random_ish_spec``: (HER2 per cell, CEP17 per cell) drawn inside each breast group,
# and near one of its cut-offs (ratio 2.0, HER2 4 or 6 copies per cell) for the near cases.
FISH_FORMATS = ("tiff16", "tiff8", "png8", "jpeg")
BRIGHTFIELD_FORMATS = ("png8", "jpeg")


def _group_means(rng, group: int, near: bool) -> tuple[float, float]:
    """(HER2 per cell, CEP17 per cell) inside ``group``; ``near``: within 10% of one of its cut-offs."""
    u = rng.uniform
    if group == 1:
        cep = u(1.6, 3.5)
        ratio = u(2.05, 2.2) if near else u(2.3, 7.0)
        return float(np.clip(max(ratio * cep, u(4.4, 5.0) if near else 4.6), 4.2, 30.0)), cep
    if group == 2:
        cep = u(1.2, 1.6)
        her2 = u(3.6, 3.9) if near else u(2.3 * cep, 3.8)
        return float(min(her2, 3.9)), float(min(cep, her2 / 2.1))
    if group == 3:
        cep = u(3.6, 5.0)
        her2 = u(6.0, 6.6) if near else u(6.6, 9.0)
        return her2, float(max(cep, her2 / 1.9 if not near else her2 / u(1.8, 1.95)))
    if group == 4:
        cep = u(2.8, 4.0)
        her2 = (u(4.1, 4.4) if rng.random() < 0.5 else u(5.5, 5.9)) if near else u(4.4, 5.6)
        return her2, float(max(cep, her2 / 1.9))
    cep = u(1.6, 2.6)
    her2 = cep * (u(1.8, 1.95) if near else u(0.8, 1.7))
    return float(min(her2, 3.8)), cep


def random_ish_spec(seed: int, brightfield: bool = False) -> tuple[IshFieldSpec, str, dict]:
    """A case's field spec with every nuisance drawn from its range, its file format and its axes.

    The breast group (1-5) is drawn, a third of the cases within 10% of a
    cut-off; HER2 and CEP17 copies per cell inside it; spots with a PSF
    sigma of 0.1-0.3 um, a 2-3x brightness spread (lognormal) or none,
    amplicon clusters 0.5-2.5 um across (round or lobed), separate signals
    one to two signal diameters apart at the least; FISH with
    autofluorescence, out-of-focus nuclei, channel bleed 0-10%, saturated
    exposure in a fifth of the cases and any of the file formats;
    brightfield with a camera white balance, vignetting and pale hematoxylin.
    The fields of a case are ``dataclasses.replace(spec, seed=...)``.
    """
    rng = np.random.default_rng(seed)
    group = int(rng.integers(1, 6))
    near = bool(rng.random() < 1 / 3)
    her2, cep = _group_means(rng, group, near)
    spec = dict(group=None, her2_mean=her2, cep17_mean=cep, clustered=bool(her2 >= 6 and rng.random() < 0.85),
                layout="crowded" if rng.random() < 0.3 else "isolated", seed=seed * 100,
                spot_sigma_um=float(rng.uniform(0.1, 0.3) if not brightfield else rng.uniform(0.1, 0.2)),
                brightness_spread=float(rng.choice([0.0, rng.uniform(0.28, 0.35)])),
                cluster_sd_um=float(rng.uniform(0.5, 2.5) / 4), cluster_irregular=bool(rng.random() < 0.5))
    if brightfield:
        spec.update(mpp=float(rng.choice([0.07, 0.1])),
                    white_balance=(1.0, float(rng.uniform(0.85, 1.0)), float(rng.uniform(0.6, 1.0))),
                    vignetting=float(rng.uniform(0.0, 0.35)), hematoxylin=float(rng.uniform(0.3, 1.0)))
        fmt = str(rng.choice(BRIGHTFIELD_FORMATS))
    else:
        spec.update(autofluorescence=float(rng.choice([0.0, rng.uniform(0.02, 0.08)])),
                    out_of_focus=int(rng.integers(0, 7)), bleed=float(rng.uniform(0, 0.1)),
                    exposure=float(rng.uniform(2.5, 4.0)) if rng.random() < 0.2 else 1.0)
        fmt = str(rng.choice(FISH_FORMATS))
    # Drawn from a stream of its own, so that adding it left every other draw of a seed as it was.
    spec["spacing"] = float(np.random.default_rng([seed, 11]).uniform(1.0, 2.0))
    s = IshFieldSpec(**spec)
    axes = {"group": str(group), "near cut-off": "near" if near else "clear", "layout": s.layout,
            "psf": "sharp" if s.spot_sigma_um < 0.2 else "wide",
            "brightness": "spread" if s.brightness_spread else "even",
            "clusters": ("lobed" if s.cluster_irregular else "round") if s.clustered else "none",
            "format": fmt, "spacing": "close" if s.spacing < 1.5 else "apart"}
    if brightfield:
        axes.update({"white balance": "yellow" if s.white_balance[2] < 0.85 else "neutral",
                     "vignetting": "strong" if s.vignetting > 0.2 else "mild",
                     "hematoxylin": "pale" if s.hematoxylin < 0.6 else "normal", "mpp": f"{s.mpp:g}"})
    else:
        axes.update({"autofluorescence": "on" if s.autofluorescence else "off",
                     "bleed": "high" if s.bleed > 0.05 else "low",
                     "saturation": "saturated" if s.exposure > 1 else "linear"})
    return s, fmt, axes
