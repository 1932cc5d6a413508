"""ShapeGroups: per-tensor stds and means of many tensors in few reductions
equal one torch reduction per tensor, in the tensors' own order."""

import math

import torch

from traintop.engine.steps.by_shape import SMALL, ShapeGroups, stds


def _tensors():
    g = torch.Generator().manual_seed(0)
    shapes = [(128,), (64, 8), (128,), (SMALL + 1,), (64, 8), (3,), (128,), (70, 70)]
    return [torch.randn(s, generator=g) * (i + 1) + i for i, s in enumerate(shapes)]


def test_groups_stack_small_tensors_of_one_shape_and_keep_large_ones_alone():
    ts = _tensors()
    groups = ShapeGroups(ts)
    assert sorted(map(sorted, groups.groups)) == [[0, 2, 6], [1, 4], [3], [5], [7]]


def test_stds_and_means_equal_one_reduction_per_tensor_in_position_order():
    ts = _tensors()
    groups = ShapeGroups(ts)
    blocks = groups.stack(ts, copy=False)
    got_std = groups.spread(stds(blocks))
    got_mean = groups.spread([b.mean(dim=1) for b in blocks])
    for i, t in enumerate(ts):
        assert math.isclose(got_std[i].item(), t.std().item(), rel_tol=1e-6)
        assert math.isclose(got_mean[i].item(), t.mean().item(), rel_tol=1e-5, abs_tol=1e-6)


def test_missing_positions_read_nan_and_copies_do_not_follow_the_tensors():
    ts = _tensors()
    present = [0, 3, 5]
    groups = ShapeGroups([ts[i] for i in present], present, len(ts))
    before = groups.stack(ts)                 # copies: a 'before' of an update
    for i in present:
        ts[i].add_(1.0)
    after = groups.stack(ts, copy=False)
    changes = groups.spread([(a - b).mean(dim=1) for a, b in zip(after, before)])
    for i in range(len(ts)):
        if i in present:
            assert math.isclose(changes[i].item(), 1.0, rel_tol=1e-5)
        else:
            assert math.isnan(changes[i].item())


def test_a_one_value_row_has_a_nan_std_without_a_warning():
    """A Linear(n, 1)'s bias: torch warned 'degrees of freedom is <= 0' on every
    measured step of a watched model; the figure is NaN as Tensor.std gives."""
    import math
    import warnings

    from traintop.engine.steps.by_shape import stds
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one, two = stds([torch.tensor([[3.0]]), torch.tensor([[1.0, 3.0]])])
    assert math.isnan(one.item()) and two.item() == torch.tensor([1.0, 3.0]).std().item()
