"""The fast path's head: a multinomial logistic regression refitted on cached embeddings.

The objective is scikit-learn's, so its ``C`` means the same thing here: the mean
cross-entropy plus ``||W||^2 / (2 C n)`` over ``n`` examples (the bias is not penalised).
Scaling the penalty by ``1/n`` keeps a few-shot start strongly regularised and lets a node
with thousands of labels fit them closely. On frozen all-MiniLM-L6-v2 embeddings the best
``C`` by scikit-learn's own cross-validation is 10 on both BANKING77 and CLINC150 (DESIGN.md:
C=1 90.8 / 94.6 %, C=10 92.95 / 95.6 %, C=100 92.7 / 95.4 %), which is the default.

L-BFGS warm-started from the serving head converges in a few dozen iterations, so a refit
over a node's whole memory takes a fraction of a second (``ecc bench learner`` reports it).

>>> import numpy as np
>>> x = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]], dtype=np.float32)
>>> w, b = fit_softmax(x, np.array([0, 1, 0, 1]), n_classes=2, c=10.0)
>>> (x @ w.T + b).argmax(1).tolist()
[0, 1, 0, 1]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

Array = np.ndarray[Any, Any]


def fit_softmax(
    x: Array,
    y: Array,
    n_classes: int,
    c: float,
    init: tuple[Array, Array] | None = None,
    max_iter: int = 200,
    tolerance: float = 1e-7,
    frozen: Array | None = None,
    center: Array | None = None,
    center_weight: Array | None = None,
    column_penalty: Array | None = None,
) -> tuple[Array, Array]:
    """Logit weights ``(W, b)`` (``logits = x @ W.T + b``) of the regularised fit.

    ``init`` warm-starts from earlier weights; rows beyond theirs (new classes) start at
    zero. ``frozen`` (one flag per class) keeps those rows (weights and bias) as ``init``
    gives them, unpenalised: classes the node has no example of, whose rows it borrowed
    from the fleet (:mod:`learners.fleet`), compete in the softmax but are not refitted
    to nothing. The other rows then keep their sum (weights and biases): without it, the
    cheapest way to fit examples that never show a frozen class is to lift every other
    logit above it (their biases rose by 13 in a test), so the borrowed class would never
    be answered again. Its examples re-divide what the node's own classes share; where a
    frozen class stands against them as a group is the fleet's to say.

    ``center`` moves the L2 penalty's centre from zero to those weights, each row's
    penalty multiplied by ``center_weight`` (a prior: a node started from the fleet's head
    keeps near it where its own few examples say little; the weight is how many examples
    stood behind the row). ``column_penalty`` multiplies each feature's penalty (one
    factor per column: :func:`layer_prior`; or one row of them per class:
    :func:`row_layer_prior`). Deterministic: no randomness, the same inputs
    give the same weights.
    """
    if c <= 0:
        raise ValueError("c must be > 0")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    w0 = torch.zeros(n_classes, xt.shape[1])
    b0 = torch.zeros(n_classes)
    if init is not None:
        k = min(n_classes, len(init[0]))
        w0[:k] = torch.from_numpy(np.asarray(init[0][:k], dtype=np.float32))
        b0[:k] = torch.from_numpy(np.asarray(init[1][:k], dtype=np.float32))
    free = torch.ones(n_classes)
    if frozen is not None:
        free = torch.from_numpy(~np.asarray(frozen, dtype=bool)).float()
    # L-BFGS optimises v = W * sqrt(column_penalty), where the penalty is the same on every
    # entry: its start is a multiple of the identity, and the layer prior's factors span 100x
    # (a refit under it took twice as long in W).
    root = torch.ones(())
    if column_penalty is not None:
        root = torch.from_numpy(np.asarray(column_penalty, dtype=np.float32)).sqrt()
    v = (w0 * root).requires_grad_(True)
    b = b0.requires_grad_(True)
    if frozen is not None and bool(np.any(frozen)):
        v.register_hook(lambda grad: _within(grad, free, 1.0 / root))
        b.register_hook(lambda grad: _within(grad, free))
    penalty = 1.0 / (2.0 * c * max(1, len(xt)))
    c0 = None
    if center is not None:
        c0 = torch.from_numpy(np.asarray(center, dtype=np.float32)) * root
    weights = None  # per row: what each row's penalty counts (None: 1 each, the plain fit)
    if frozen is not None or center_weight is not None:
        weights = free
        if center_weight is not None:
            weights = free * torch.from_numpy(np.asarray(center_weight, dtype=np.float32))
    opt = torch.optim.LBFGS(
        [v, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=tolerance,
        tolerance_change=tolerance * 1e-2,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        ce = torch.nn.functional.cross_entropy(xt @ (v / root).T + b, yt)
        d = v if c0 is None else v - c0
        squares = (d * d).sum() if weights is None else ((d * d).sum(1) * weights).sum()
        loss = ce + penalty * squares
        loss.backward()
        return loss

    opt.step(closure)
    return (v / root).detach().numpy().copy(), b.detach().numpy().copy()


def layer_prior(dim: int, layers: int, weight: float) -> Array | None:
    """Per-column penalty factors over features made of ``layers`` equal blocks (the
    pooled layers, the last one last) that make the fit the one over those features with
    every block but the last scaled by ``weight`` and the whole renormalised to unit length:
    below 1, a head learnt from a few labels leans on the last layer (the sentence
    embedding), one learnt from many uses them all. None where it changes nothing.

    >>> layer_prior(6, 3, 0.5).round(3).tolist()
    [2.0, 2.0, 2.0, 2.0, 0.5, 0.5]
    """
    if layers <= 1 or weight == 1.0:
        return None
    if not 0.0 < weight <= 1.0:
        raise ValueError(f"the earlier layers' weight must be in (0, 1], not {weight}")
    if dim % layers:
        raise ValueError(f"{dim} features are not {layers} equal blocks")
    return _prior_rows(dim, layers, np.array([weight]))[0]


def row_layer_prior(
    dim: int, layers: int, counts: Array, weight: float, full_at: int
) -> Array | None:
    """Per-row :func:`layer_prior` factors (one row per class): the earlier layers' weight
    of a class with ``n`` examples rises from ``weight`` to 1 as ``n / full_at``, so a
    young intent's row leans on the sentence embedding and an intent with ``full_at``
    examples or more reads every layer alike, whatever the others have. ``full_at`` 0:
    every row weighs them by ``weight`` (:func:`layer_prior`). None where it changes
    nothing (``weight`` 1 or one layer).

    >>> row_layer_prior(6, 3, np.array([0, 3, 9]), 0.5, 6).round(3).tolist()
    [[2.0, 2.0, 2.0, 2.0, 0.5, 0.5], [2.0, 2.0, 2.0, 2.0, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]
    """
    flat = layer_prior(dim, layers, weight)
    if full_at <= 0 or flat is None:
        return flat
    return _prior_rows(dim, layers, np.clip(np.asarray(counts, np.float64) / full_at, weight, 1.0))


def _prior_rows(dim: int, layers: int, weights: Array) -> Array:
    """:func:`layer_prior`'s factors, one row per weight in ``weights`` (each in (0, 1];
    1 gives ones)."""
    w2 = weights[:, None] ** 2
    scale = layers / ((layers - 1) * w2 + 1.0)  # the renormalisation, squared
    factors = np.repeat(1.0 / (scale * w2), dim, axis=1)
    factors[:, dim - dim // layers :] = 1.0 / scale
    return factors.astype(np.float32)


def _within(
    grad: torch.Tensor, free: torch.Tensor, scale: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """``grad`` with the frozen rows' entries zero, projected so that a step keeps the free
    rows' sum of ``scale * parameter`` in every column (``scale`` 1: the free rows' mean
    taken out)."""
    mask = free.view(-1, *([1] * (grad.dim() - 1)))
    g = torch.as_tensor(scale, dtype=grad.dtype).expand_as(grad) * mask
    kept = grad * mask
    shift = (g * kept).sum(0, keepdim=True) / (g * g).sum(0, keepdim=True).clamp(min=1e-12)
    return (kept - g * shift) * mask
