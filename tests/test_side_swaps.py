"""η's prior term up to left/right: the relabellings that leave a render unchanged, and the loss over them."""

import dataclasses

import pytest
import torch

from conftest import TinyRun
from keypointgan import geometry
from keypointgan.losses import regressor_prior_loss
from keypointgan.skeleton import SKELETONS, Skeleton
from keypointgan.training import keypointgan_objective


def test_a_human_skeleton_swaps_arms_and_legs_apart_and_together():
    sk = SKELETONS["synthetic"]
    swaps = sk.side_swaps
    assert swaps[0] == list(range(sk.num_keypoints)) and len(swaps) == 4
    assert sk.flip_permutation in swaps
    moved = [{sk.keypoints[i] for i, j in enumerate(p) if i != j} for p in swaps[1:]]
    arms = {n for n in sk.keypoints if any(w in n for w in ("shoulder", "elbow", "wrist"))}
    legs = {n for n in sk.keypoints if any(w in n for w in ("hip", "knee", "ankle"))}
    assert sorted(map(sorted, moved)) == sorted(map(sorted, [arms, legs, arms | legs]))
    q = torch.rand(3, sk.num_keypoints, 2) * 1.6 - 0.8
    for perm in swaps:  # the drawing is the same (to rounding: a limb may be drawn from its other end)
        assert torch.allclose(geometry.render_skeleton(q[:, perm], sk, 32), geometry.render_skeleton(q, sk, 32), atol=1e-6)


def test_every_preset_swap_keeps_the_drawing():
    for sk in SKELETONS.values():
        q = torch.rand(2, sk.num_keypoints, 2) * 1.6 - 0.8
        assert len(sk.side_swaps) >= 2, sk.name
        for perm in sk.side_swaps:
            assert torch.allclose(geometry.render_skeleton(q[:, perm], sk, 24), geometry.render_skeleton(q, sk, 24), atol=1e-6), sk.name


def test_a_swap_that_would_change_the_drawing_is_left_out():
    # the left hand hangs from the head, the right from the neck: swapping them moves a limb
    sk = Skeleton(keypoints=["head", "neck", "l_hand", "r_hand"], limbs=[("head", "neck"), ("head", "l_hand"), ("neck", "r_hand")],
                  symmetric=[("l_hand", "r_hand")])
    assert sk.side_swaps == [[0, 1, 2, 3]]


def test_the_loss_up_to_swaps_does_not_pull_towards_the_two_sides_average():
    sk = SKELETONS["synthetic"]
    q = torch.rand(1, sk.num_keypoints, 2) * 1.6 - 0.8
    both = torch.cat([q, q[:, sk.flip_permutation]])  # one render, labelled both ways (a figure facing either way)
    swaps = torch.tensor(sk.side_swaps)
    average = both.mean(0, keepdim=True).expand(2, -1, -1)
    one_side = q.expand(2, -1, -1)
    # the plain error prefers the folded average; up to the swaps, either labelling costs nothing
    assert regressor_prior_loss(average, both) < regressor_prior_loss(one_side, both)
    assert float(regressor_prior_loss(one_side, both, swaps)) == 0.0
    assert float(regressor_prior_loss(average, both, swaps)) > 1e-3
    assert torch.equal(regressor_prior_loss(one_side, both, swaps[:1]), regressor_prior_loss(one_side, both))


def test_the_objective_uses_the_swaps_when_asked(tiny_data, tmp_path):
    run = TinyRun(tiny_data, tmp_path / "run")
    x, xa = next(run.batches())
    q = run.prior[: x.shape[0]]
    q = torch.cat([q[:2], q[:2, run.skeleton.flip_permutation]])[: x.shape[0]]
    kw = dict(skeleton=run.skeleton, rec_loss=run.state.rec_loss, fakes_for_d=lambda y: y)
    eta = run.state.nets["eta"].eval()  # the same reading in both calls
    plain = keypointgan_objective(run.state.nets, x, xa, q, cfg=run.state.cfg, **kw).parts["loss_eta_prior"]
    cfg = dataclasses.replace(run.state.cfg, regressor_side_swaps=True)
    swapped = keypointgan_objective(run.state.nets, x, xa, q, cfg=cfg, **kw).parts["loss_eta_prior"]
    with torch.no_grad():
        pred = eta(geometry.render_signed(q, run.skeleton, cfg.model.size, cfg.model.sigma))
    assert torch.isclose(swapped, regressor_prior_loss(pred, q, torch.tensor(run.skeleton.side_swaps)))
    assert swapped < plain
