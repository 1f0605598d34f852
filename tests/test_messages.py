"""User-facing error messages: they name what is wrong, show the value as plain
Python (never a NumPy repr) and say how to fix it."""
import os

import numpy as np
import pytest

import fastkm
from fastkm import KMeans

Image = pytest.importorskip("PIL.Image")


def _message(excinfo):
    text = str(excinfo.value)
    assert "np.float64(" not in text and "np.str_(" not in text and "np.int64(" not in text
    return text


def test_non_numeric_cell_is_named_once_with_its_position():
    with pytest.raises(ValueError) as e:
        KMeans(2).fit([[1, 2], ["a", 3]])
    text = _message(e)
    assert "'a' at index (1, 0) is not a number" in text
    assert text.count("could not convert") == 0 and "Convert or drop" in text
    with pytest.raises(ValueError) as e:
        KMeans(2).fit(np.array([["1", "x"], ["2", "3"]]))
    assert "'x' at index (0, 1)" in _message(e)


def test_negative_weight_message_is_plain():
    with pytest.raises(ValueError) as e:
        KMeans(2).fit([[1, 2], [3, 4]], sample_weight=np.array([-1.5, 2.0]))
    assert "the smallest is -1.5" in _message(e)


def test_parameter_type_errors_show_plain_values():
    with pytest.raises(TypeError) as e:
        KMeans(2, n_init=np.float64(2.0)).fit([[1, 2], [3, 4]])
    assert "n_init must be an int; got 2.0 of type float64" in _message(e)
    with pytest.raises(TypeError) as e:
        KMeans(2, tol=np.str_("a")).fit([[1, 2], [3, 4]])
    assert "tol must be a number; got 'a'" in _message(e)


def test_parameter_errors_are_scikit_learns_kind_when_it_is_installed():
    exceptions = pytest.importorskip("sklearn.utils._param_validation")
    with pytest.raises(exceptions.InvalidParameterError):
        KMeans(0).fit([[1, 2], [3, 4]])
    with pytest.raises(ValueError):  # also a ValueError and a TypeError
        KMeans(2, algorithm="bogus").fit([[1, 2], [3, 4]])
    with pytest.raises(TypeError):
        KMeans(2, n_threads="x").fit([[1, 2], [3, 4]])


def test_nan_and_infinity_messages_say_what_to_do():
    with pytest.raises(ValueError, match="does not accept missing values: drop those rows or "
                                         "impute them"):
        KMeans(2).fit([[1, 2], [3, np.nan]])
    with pytest.raises(ValueError, match="infinity or a value too large for float64; drop or "
                                         "clip"):
        KMeans(2).fit([[1, 2], [3, np.inf]])


def test_saving_a_palette_image_as_jpeg_is_a_clear_error(tmp_path):
    q = fastkm.quantize((np.random.RandomState(0).rand(8, 8, 3) * 255).astype(np.uint8), 4)
    for name in ("x.jpg", "x.webp"):
        with pytest.raises(ValueError, match=r"has no palette \(indexed\) images; use \.png or "
                                             r"\.gif, or save result\.to_array\(\)"):
            q.save(tmp_path / name)
        assert not os.listdir(tmp_path)  # nothing half-written
    q.save(tmp_path / "x.bmp")
    assert Image.open(tmp_path / "x.bmp").mode == "P"


def test_two_channel_arrays_are_gray_plus_alpha_and_the_message_lists_them():
    ga = np.zeros((4, 5, 2), np.uint8)
    ga[..., 0] = np.arange(5) * 50
    ga[..., 1] = 255
    ga[0, 0, 1] = 0
    q = fastkm.quantize(ga, 8)
    assert q.palette.shape[1] == 4 and q.transparent_index is not None
    with pytest.raises(ValueError, match=r"C = 1 \(gray\), 2 \(gray \+ alpha\), 3 \(RGB\) or 4 "
                                         r"\(RGBA\); got \(4, 4, 5\)"):
        fastkm.quantize(np.zeros((4, 4, 5), np.uint8), 2)


def test_a_decompression_bomb_is_a_value_error_that_says_how_to_allow_it(tmp_path,
                                                                        monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 300 x 300 is over twice that
    with pytest.raises(ValueError) as e:
        fastkm.quantize(str(path), 4)
    text = _message(e)
    assert "the image has 90,000 pixels" in text and "PIL.Image.MAX_IMAGE_PIXELS" in text
    assert "DecompressionBomb" not in text
