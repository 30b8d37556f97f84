"""The head's fit: the layer prior is the fit over rescaled layers, written as a penalty."""

from __future__ import annotations

import numpy as np
import pytest

from learners.head_fit import fit_softmax, layer_prior


def test_the_layer_prior_is_the_fit_over_the_earlier_layers_scaled_down() -> None:
    rng = np.random.default_rng(0)
    layers, width, weight = 3, 4, 0.4
    x = rng.normal(size=(60, layers * width)).astype(np.float32)
    y = rng.integers(0, 3, size=60)
    scale = np.full(layers * width, weight, np.float32)
    scale[-width:] = 1.0
    scale *= np.sqrt(layers / ((layers - 1) * weight**2 + 1))  # the renormalisation
    plain_w, plain_b = fit_softmax(x * scale, y, 3, 5.0, max_iter=500, tolerance=1e-9)
    prior = layer_prior(layers * width, layers, weight)
    w, b = fit_softmax(x, y, 3, 5.0, max_iter=500, tolerance=1e-9, column_penalty=prior)
    np.testing.assert_allclose(x @ w.T + b, (x * scale) @ plain_w.T + plain_b, atol=1e-3)


def test_the_layer_prior_changes_nothing_at_one_and_refuses_nonsense() -> None:
    assert layer_prior(12, 3, 1.0) is None and layer_prior(12, 1, 0.4) is None
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        layer_prior(12, 3, 1.5)
    with pytest.raises(ValueError, match="equal blocks"):
        layer_prior(10, 3, 0.5)
