"""Corner pooling: both implementations against a naive per-row reference, forward and gradient."""
from __future__ import annotations

import pytest
import torch

from cornernet_saccade.model.layers import CornerPool

DIRECTIONS = ["top", "bottom", "left", "right"]


def naive_pool(x: torch.Tensor, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference forward and arg-max per output position, scanning as the original C++ does.

    Returns (output, argmax) where argmax holds, along the pooled axis, the index of the first
    element (in scan order, strict '>') that holds the running maximum.
    """
    dim = 2 if direction in ("top", "bottom") else 3
    n = x.shape[dim]
    order = list(range(n - 1, -1, -1)) if direction in ("top", "left") else list(range(n))
    xt = x.movedim(dim, -1)
    out = torch.empty(xt.shape, dtype=x.dtype)
    arg = torch.empty(xt.shape, dtype=torch.long)
    flat_x, flat_out, flat_arg = xt.reshape(-1, n), out.view(-1, n), arg.view(-1, n)
    for row in range(flat_x.shape[0]):
        best, best_index = None, None
        for i in order:
            value = flat_x[row, i].item()
            if best is None or value > best:
                best, best_index = value, i
            flat_out[row, i] = best
            flat_arg[row, i] = best_index
    return out.movedim(-1, dim), arg.movedim(-1, dim)


def naive_grad(x: torch.Tensor, grad_out: torch.Tensor, direction: str) -> torch.Tensor:
    """Gradient routed to each output's first-met arg-max (the original's backward)."""
    dim = 2 if direction in ("top", "bottom") else 3
    _, arg = naive_pool(x, direction)
    return torch.zeros_like(x).scatter_add_(dim, arg, grad_out)


def sample_input(shape, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    return torch.relu(x - 0.3)  # many exact zeros: ties like after a ReLU


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 2, 1, 9), (1, 1, 13, 1), (2, 2, 11, 17)])
@pytest.mark.parametrize("export_friendly", [False, True])
def test_forward_matches_naive_reference(direction, shape, export_friendly):
    x = sample_input(shape, seed=sum(shape))
    expected, _ = naive_pool(x, direction)
    got = CornerPool(direction, export_friendly=export_friendly)(x)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_export_friendly_pool_with_fixed_steps_matches_reference(direction):
    # a dynamic-size export takes ceil(log2(max_length)) doubling steps whatever the map size
    x = sample_input((2, 2, 11, 17), seed=5)
    expected, _ = naive_pool(x, direction)
    assert torch.equal(CornerPool(direction, export_friendly=True, max_length=512)(x), expected)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 2, 9, 4)])
def test_training_gradient_routes_ties_to_first_scanned(direction, shape):
    x = sample_input(shape, seed=7).requires_grad_(True)
    grad_out = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    CornerPool(direction)(x).backward(grad_out)
    assert torch.allclose(x.grad, naive_grad(x.detach(), grad_out, direction), atol=1e-12)


def test_tie_example_by_hand():
    # top pool on one column [0, 0, 0] scanned from the bottom: every output's max is first met at
    # the last row, so all gradient lands there (cummax's own backward would spread it upwards).
    x = torch.zeros(1, 1, 3, 1, requires_grad=True)
    CornerPool("top")(x).sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 0.0, 3.0]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_gradcheck_without_ties(direction):
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(CornerPool(direction), (x,))


def test_unknown_direction_rejected():
    with pytest.raises(ValueError):
        CornerPool("diagonal")
