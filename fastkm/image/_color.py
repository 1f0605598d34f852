"""Color conversions and color differences for ``fastkm.quantize``, vectorised in NumPy.

sRGB (IEC 61966-2-1, D65) <-> linear RGB <-> OKLab (Ottosson 2020) or CIELab
(D65 white), and the CIEDE2000 color difference (Sharma, Wu & Dalal 2005).
Arrays have the color in the last axis; sRGB values are 0..255 (uint8 or
float), linear RGB 0..1, OKLab L 0..1, CIELab L 0..100.
"""
import numpy as np

# --------------------------------------------------------------------------- sRGB transfer

def srgb_to_linear(c):
    """sRGB values 0..255 -> linear RGB 0..1 (float64)."""
    c = np.asarray(c)
    if c.dtype == np.uint8:
        return _SRGB_LUT[c]
    c = np.asarray(c, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    """Linear RGB 0..1 -> sRGB 0..255 (float64, not clipped)."""
    x = np.asarray(x, dtype=np.float64)
    pos = np.maximum(x, 0.0)
    return 255.0 * np.where(x <= 0.0031308, 12.92 * x, 1.055 * pos ** (1 / 2.4) - 0.055)


_SRGB_LUT = srgb_to_linear(np.arange(256, dtype=np.float64))

# --------------------------------------------------------------------------- OKLab

# linear sRGB -> LMS: every coefficient is positive, so LMS grows with each channel
_OK_M1 = np.array([
    [0.4122214708, 0.5363325363, 0.0514459929],
    [0.2119034982, 0.6806995451, 0.1073969566],
    [0.0883024619, 0.2817188376, 0.6299787005],
])
_OK_M2 = np.array([
    [0.2104542553, 0.7936177850, -0.0040720468],
    [1.9779984951, -2.4285922050, 0.4505937099],
    [0.0259040371, 0.7827717662, -0.8086757660],
])
_OK_M1_INV = np.array([
    [4.0767416621, -3.3077115913, 0.2309699292],
    [-1.2684380046, 2.6097574011, -0.3413193965],
    [-0.0041960863, -0.7034186147, 1.7076147010],
])
_OK_M2_INV = np.array([
    [1.0, 0.3963377774, 0.2158037573],
    [1.0, -0.1055613458, -0.0638541728],
    [1.0, -0.0894841775, -1.2914855480],
])


def linear_to_oklab(rgb):
    return np.cbrt(rgb @ _OK_M1.T) @ _OK_M2.T


def oklab_to_linear(lab):
    return ((np.asarray(lab, dtype=np.float64) @ _OK_M2_INV.T) ** 3) @ _OK_M1_INV.T


# --------------------------------------------------------------------------- CIELab (D65)

_XYZ_M = np.array([  # linear sRGB -> XYZ (D65): every coefficient is positive
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])
_XYZ_M_INV = np.linalg.inv(_XYZ_M)
_WHITE = _XYZ_M.sum(axis=1)  # XYZ of linear (1, 1, 1), i.e. D65 as sRGB defines it
_EPS = (6 / 29) ** 3


def _lab_f(t):
    return np.where(t > _EPS, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)


def _lab_f_inv(f):
    return np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29))


def linear_to_lab(rgb):
    f = _lab_f((rgb @ _XYZ_M.T) / _WHITE)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_linear(lab):
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    return (_lab_f_inv(f) * _WHITE) @ _XYZ_M_INV.T


def srgb_to_lab(c):
    """sRGB 0..255 -> CIELab (D65)."""
    return linear_to_lab(srgb_to_linear(c))


# --------------------------------------------------------------------------- color spaces

COLOR_SPACES = ("rgb", "oklab", "lab")
# feature units per unit of alpha (0..1) for premultiplied perceptual features:
# alpha spans about as much as lightness does
ALPHA_SCALE = {"rgb": 255.0, "oklab": 1.0, "lab": 100.0}


def srgb_to_space(c, space):
    """sRGB 0..255 (..., 3) -> features of the color space, float64."""
    if space == "rgb":
        return np.asarray(c, dtype=np.float64)
    lin = srgb_to_linear(c)
    return linear_to_oklab(lin) if space == "oklab" else linear_to_lab(lin)


def space_to_srgb(x, space):
    """Features of the color space (..., 3) -> sRGB 0..255, float64, not clipped."""
    if space == "rgb":
        return np.asarray(x, dtype=np.float64)
    lin = oklab_to_linear(x) if space == "oklab" else lab_to_linear(x)
    return linear_to_srgb(lin)


def color_features(colors, space):
    """Clustering features of uint8 colors (n, 3) or (n, 4), float64.

    RGB(A) is premultiplied: ``(r*a/255, g*a/255, b*a/255, a)``; for perceptual
    spaces the color's coordinates are scaled by alpha (0..1) and alpha is
    appended in ``ALPHA_SCALE`` units.
    """
    colors = np.asarray(colors)
    x = srgb_to_space(colors[:, :3], space)
    if colors.shape[1] == 3:
        return x
    alpha = colors[:, 3:4] / 255.0
    return np.concatenate([x * alpha, alpha * ALPHA_SCALE[space]], axis=1)


def features_to_colors(x, space, n_channels):
    """Inverse of ``color_features``, rounded and clipped to uint8."""
    x = np.asarray(x, dtype=np.float64)
    if n_channels == 3:
        return _to_uint8(space_to_srgb(x, space))
    alpha = np.clip(x[:, 3:4] / ALPHA_SCALE[space], 0.0, 1.0)
    a8 = _to_uint8(alpha * 255.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        color = np.where(alpha > 0, x[:, :3] / np.where(alpha > 0, alpha, 1.0), 0.0)
    rgb = _to_uint8(space_to_srgb(color, space))
    rgb[a8[:, 0] == 0] = 0
    return np.concatenate([rgb, a8], axis=1)


def _to_uint8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _interval_matmul(lo, hi, m):
    """Bounds of x @ m.T for x in the box [lo, hi] (interval arithmetic)."""
    pos = np.maximum(m, 0.0)
    neg = np.minimum(m, 0.0)
    return lo @ pos.T + hi @ neg.T, hi @ pos.T + lo @ neg.T


def feature_box(lo, hi, space):
    """A box containing the features of every uint8 color in [lo, hi] (n, 3 or 4).

    Exact bounds for RGB; for OKLab and CIELab by monotonicity up to the LMS/XYZ
    stage and interval arithmetic after it, widened slightly for rounding.
    """
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if space == "rgb":
        flo, fhi = lo[:, :3], hi[:, :3]
    else:
        llo, lhi = srgb_to_linear(lo[:, :3]), srgb_to_linear(hi[:, :3])
        if space == "oklab":
            clo, chi = np.cbrt(llo @ _OK_M1.T), np.cbrt(lhi @ _OK_M1.T)
            flo, fhi = _interval_matmul(clo, chi, _OK_M2)
        else:
            glo, ghi = _lab_f((llo @ _XYZ_M.T) / _WHITE), _lab_f((lhi @ _XYZ_M.T) / _WHITE)
            flo = np.stack([116 * glo[:, 1] - 16, 500 * (glo[:, 0] - ghi[:, 1]),
                            200 * (glo[:, 1] - ghi[:, 2])], axis=1)
            fhi = np.stack([116 * ghi[:, 1] - 16, 500 * (ghi[:, 0] - glo[:, 1]),
                            200 * (ghi[:, 1] - glo[:, 2])], axis=1)
        pad = 1e-9 * ALPHA_SCALE[space]
        flo, fhi = flo - pad, fhi + pad
    if lo.shape[1] == 3:
        return flo, fhi
    a_lo, a_hi = lo[:, 3:4] / 255.0, hi[:, 3:4] / 255.0
    products = np.stack([flo * a_lo, flo * a_hi, fhi * a_lo, fhi * a_hi])
    scale = ALPHA_SCALE[space]
    return (np.concatenate([products.min(axis=0), a_lo * scale], axis=1),
            np.concatenate([products.max(axis=0), a_hi * scale], axis=1))


# --------------------------------------------------------------------------- CIEDE2000

def ciede2000(lab1, lab2):
    """CIEDE2000 color difference (kL = kC = kH = 1) between CIELab arrays (..., 3)."""
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(c7 / (c7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    zero = (c1p * c2p) == 0

    dlp = L2 - L1
    dcp = c2p - c1p
    dhp = h2p - h1p
    dhp = np.where(dhp > 180, dhp - 360, np.where(dhp < -180, dhp + 360, dhp))
    dhp = np.where(zero, 0.0, dhp)
    dHp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dhp) / 2)

    lbp = (L1 + L2) / 2
    cbp = (c1p + c2p) / 2
    hsum = h1p + h2p
    hbp = np.where(np.abs(h1p - h2p) <= 180, hsum / 2,
                   np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2))
    hbp = np.where(zero, hsum, hbp)
    t = (1 - 0.17 * np.cos(np.radians(hbp - 30)) + 0.24 * np.cos(np.radians(2 * hbp))
         + 0.32 * np.cos(np.radians(3 * hbp + 6)) - 0.20 * np.cos(np.radians(4 * hbp - 63)))
    dtheta = 30 * np.exp(-(((hbp - 275) / 25) ** 2))
    cbp7 = cbp ** 7
    rc = 2 * np.sqrt(cbp7 / (cbp7 + 25.0 ** 7))
    sl = 1 + 0.015 * (lbp - 50) ** 2 / np.sqrt(20 + (lbp - 50) ** 2)
    sc = 1 + 0.045 * cbp
    sh = 1 + 0.015 * cbp * t
    rt = -np.sin(np.radians(2 * dtheta)) * rc
    x, y, z = dlp / sl, dcp / sc, dHp / sh
    return np.sqrt(np.maximum(x * x + y * y + z * z + rt * y * z, 0.0))
