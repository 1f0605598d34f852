"""Parameter checks and limits shared by ``quantize`` and ``Palette``."""
import numbers

import numpy as np

MAX_COLORS = 65536
PRESETS = ("default", "fast", "converged")
_RENAMED_PRESETS = {"best": "converged"}


def _check_n_colors(n_colors):
    if isinstance(n_colors, bool) or not isinstance(n_colors, numbers.Integral):
        raise TypeError(f"n_colors must be an int; got {n_colors!r}")
    if not 1 <= n_colors <= MAX_COLORS:
        raise ValueError(f"n_colors must be in [1, {MAX_COLORS}]; got {n_colors}")
    return int(n_colors)


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value.lower()


def _check_preset(preset):
    """A preset name; 'best', its old name, still works with a DeprecationWarning."""
    import warnings

    if isinstance(preset, str) and preset.lower() in _RENAMED_PRESETS:
        new = _RENAMED_PRESETS[preset.lower()]
        warnings.warn(f"preset={preset!r} is now called {new!r}: it runs Lloyd to convergence "
                      "on the exact histogram, which measures no better than 'default'; "
                      f"pass preset={new!r}", DeprecationWarning, stacklevel=4)
        return new
    return _check_choice(preset, "preset", PRESETS)


def _check_dither(dither):
    if dither is None or dither is False or (isinstance(dither, str) and dither.lower() == "none"):
        return None
    if dither is True:
        return "floyd-steinberg"
    if isinstance(dither, str) and dither.lower() in ("floyd-steinberg", "fs"):
        return "floyd-steinberg"
    raise ValueError(f"dither must be False, True or 'floyd-steinberg'; got {dither!r}")


def _index_dtype(n):
    return np.uint8 if n <= 256 else np.uint16
