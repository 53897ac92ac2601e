"""The Pillow canvas behind the UI's pictures: data scaled into the plot area, y upwards."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from lightly_assets.plots import PALETTE, Canvas, loss_curve_png


def test_data_is_scaled_into_the_plot_area_with_y_upwards() -> None:
    canvas = Canvas((100, 80), (10, 5, 90, 75), outline=(0, 0, 0))
    pixels = canvas.to_pixels(np.array([[0.0, 1.0], [2.0, 3.0], [1.0, 3.0]]), pad=4)
    np.testing.assert_allclose(pixels, [[14, 71], [86, 9], [50, 9]])
    flat = canvas.to_pixels(np.array([[5.0, 2.0], [5.0, 2.0]]))  # constant columns sit at the low corner
    np.testing.assert_allclose(flat, [[10, 75], [10, 75]])


def test_loss_curve_draws_each_epoch_falling_left_to_right() -> None:
    image = Image.open(io.BytesIO(loss_curve_png([3.0, 2.0, 1.0], width=200, height=100))).convert("RGB")
    assert image.size == (200, 100)
    pixels = np.asarray(image)
    ys, xs = np.nonzero((pixels == PALETTE[0]).all(axis=2))
    assert xs.min() < 40 and xs.max() > 160  # first and last epoch at the two ends
    assert ys[xs.argmin()] < ys[xs.argmax()]  # the highest loss first (higher up), the lowest last
    assert Image.open(io.BytesIO(loss_curve_png([]))).size == (480, 240)
