"""The head's fit: the layer prior is the fit over rescaled layers, written as a penalty."""

from __future__ import annotations

import numpy as np
import pytest

from learners.head_fit import fit_softmax, layer_prior, row_layer_prior


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
    # (float32 L-BFGS ends within 1e-3 of the other fit; without the renormalisation the
    # logits differ by 0.4)
    np.testing.assert_allclose(x @ w.T + b, (x * scale) @ plain_w.T + plain_b, atol=1e-2)


def test_the_layer_prior_changes_nothing_at_one_and_refuses_nonsense() -> None:
    assert layer_prior(12, 3, 1.0) is None and layer_prior(12, 1, 0.4) is None
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        layer_prior(12, 3, 1.5)
    with pytest.raises(ValueError, match="equal blocks"):
        layer_prior(10, 3, 0.5)


def test_each_row_reads_every_layer_alike_once_its_intent_has_enough_examples() -> None:
    few, enough = layer_prior(12, 3, 0.2), np.ones(12, np.float32)
    rows = row_layer_prior(12, 3, np.array([0, 5, 10, 40]), 0.2, 10)
    assert rows is not None and rows.shape == (4, 12)
    np.testing.assert_allclose(rows[0], few)
    np.testing.assert_allclose(rows[1], layer_prior(12, 3, 0.5))
    np.testing.assert_allclose(rows[2:], [enough, enough])
    flat = row_layer_prior(12, 3, np.array([0, 40]), 0.2, 0)
    assert flat is not None and flat.shape == (12,)
    np.testing.assert_allclose(flat, few)
    assert row_layer_prior(12, 3, np.array([0, 40]), 1.0, 10) is None


def test_a_prior_given_per_row_fits_as_the_same_prior_given_once() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 12)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    prior = layer_prior(12, 3, 0.3)
    assert prior is not None
    w1, b1 = fit_softmax(x, y, 3, 5.0, column_penalty=prior)
    w2, b2 = fit_softmax(x, y, 3, 5.0, column_penalty=np.stack([prior] * 3))
    np.testing.assert_allclose(w1, w2, atol=1e-5)
    np.testing.assert_allclose(b1, b2, atol=1e-5)


def test_frozen_rows_stay_and_the_free_rows_keep_their_sum_under_a_per_row_prior() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 12)).astype(np.float32)
    y = rng.integers(0, 3, size=80)  # class 3 has no example: its row is borrowed
    init = (rng.normal(size=(4, 12)).astype(np.float32), rng.normal(size=4).astype(np.float32))
    prior = row_layer_prior(12, 3, np.bincount(y, minlength=4), 0.2, 40)
    frozen = np.array([False, False, False, True])
    w, b = fit_softmax(x, y, 4, 5.0, init=init, frozen=frozen, column_penalty=prior)
    np.testing.assert_allclose(w[3], init[0][3])
    assert b[3] == pytest.approx(init[1][3])
    np.testing.assert_allclose(w[:3].sum(0), init[0][:3].sum(0), atol=1e-4)
    assert b[:3].sum() == pytest.approx(init[1][:3].sum(), abs=1e-4)
    assert not np.allclose(w[:3], init[0][:3])  # it did fit
