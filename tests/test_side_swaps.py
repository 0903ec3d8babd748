"""η's prior term up to left/right: the relabellings that leave a render unchanged, and the loss over them."""

import dataclasses

import pytest
import torch

from conftest import TinyRun
from keypointgan import geometry
from keypointgan.losses import regressor_prior_loss
from keypointgan.skeleton import SKELETONS, Skeleton
from keypointgan.config import make_config
from keypointgan.errors import InputError
from keypointgan.training import keypointgan_objective
from keypointgan.training.pretrain import side_swaps


def test_a_human_skeleton_swaps_its_sides_as_a_whole():
    sk = SKELETONS["synthetic"]
    assert sk.side_swaps == [list(range(sk.num_keypoints)), sk.flip_permutation]
    q = torch.rand(3, sk.num_keypoints, 2) * 1.6 - 0.8
    for perm in sk.side_swaps:  # the drawing is the same (to rounding: a limb may be drawn from its other end)
        assert torch.allclose(geometry.render_skeleton(q[:, perm], sk, 32), geometry.render_skeleton(q, sk, 32), atol=1e-6)
    assert not torch.allclose(q[:, sk.flip_permutation], q)


def test_every_preset_swap_keeps_the_drawing():
    for sk in SKELETONS.values():
        q = torch.rand(2, sk.num_keypoints, 2) * 1.6 - 0.8
        assert len(sk.side_swaps) == 2, sk.name
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


class _Reads(torch.nn.Module):
    """An η that reads every image as the given points."""

    def __init__(self, points):
        super().__init__()
        self.points = points

    def forward(self, y):
        return self.points


def test_the_objective_uses_the_swaps_when_asked(tiny_data, tmp_path):
    run = TinyRun(tiny_data, tmp_path / "run")
    x, xa = next(run.batches())
    q = run.prior[: x.shape[0]]
    flip = run.skeleton.flip_permutation
    nets = dict(run.state.nets, eta=_Reads(q[:, flip]))  # every pose read with its sides swapped
    kw = dict(skeleton=run.skeleton, rec_loss=run.state.rec_loss, fakes_for_d=lambda y: y)
    plain = keypointgan_objective(nets, x, xa, q, cfg=run.state.cfg, **kw).parts["loss_eta_prior"]
    swapped = keypointgan_objective(nets, x, xa, q, cfg=run.state.cfg, swaps=torch.tensor(run.skeleton.side_swaps), **kw).parts["loss_eta_prior"]
    assert torch.isclose(plain, ((q[:, flip] - q) ** 2).mean()) and plain > 1e-3
    assert float(swapped) == 0.0


@pytest.mark.parametrize("mode, faces, on", [("off", 0.5, False), ("on", 1.0, True), ("auto", 1.0, False), ("auto", 0.95, False),
                                            ("auto", 0.85, True), ("auto", 0.5, True), ("auto", 0.0, False)])
def test_auto_swaps_sides_only_for_a_prior_facing_both_ways(mode, faces, on):
    sk = SKELETONS["synthetic"]
    q = torch.rand(200, sk.num_keypoints, 2) * 0.2 - 0.1
    a, b = [p[0] for p in sk.symmetric], [p[1] for p in sk.symmetric]
    q[:, a, 0] += 0.5  # every left keypoint on the image's right…
    q[:, b, 0] -= 0.5
    other = int(round((1 - faces) * len(q)))
    q[:other] = q[:other, sk.flip_permutation]  # …but in these figures, which face the other way
    assert sk.facing_fraction(q) == pytest.approx(faces) and sk.facing_fraction(q.numpy()) == pytest.approx(faces)
    cfg = make_config("cpu-64", regressor_side_swaps=mode)
    got = side_swaps(cfg, sk, q)
    assert (got is not None) == on
    if on:
        assert got.tolist() == sk.side_swaps
    assert make_config("cpu-64").regressor_side_swaps == "auto" and make_config("paper-128").regressor_side_swaps == "off"
    with pytest.raises(InputError, match="regressor_side_swaps"):
        make_config("cpu-64", regressor_side_swaps="yes").validate()


def test_a_run_decides_its_swaps_once(tiny_data, tmp_path):
    run = TinyRun(tiny_data, tmp_path / "run", regressor_side_swaps="auto")
    assert run.state.side_swaps_for(run.prior) is None  # the tiny prior faces one way
    both = torch.cat([run.prior, run.prior[:, run.skeleton.flip_permutation]])
    assert side_swaps(run.state.cfg, run.skeleton, both) is not None
    assert run.state.side_swaps_for(both) is None  # decided on the first call, not again on every step


def test_the_loss_counts_only_the_keypoints_marked_valid_each_relabelling_taking_its_targets_marks():
    sk = SKELETONS["synthetic"]
    k, perm = sk.num_keypoints, sk.flip_permutation
    q = torch.rand(2, k, 2) * 1.6 - 0.8
    pred = q.clone()
    wrist = sk.keypoints.index("l_wrist")
    pred[:, wrist] += 0.5  # off by 0.5 in x and y, but not annotated
    valid = torch.ones(2, k, 1)
    valid[:, wrist] = 0
    assert float(regressor_prior_loss(pred, q, valid=valid)) == 0.0
    assert float(regressor_prior_loss(pred, q)) == pytest.approx(0.25 * 2 / (2 * k))
    # without swaps, the masked mean of the supervised bound's plain error
    p2 = torch.rand(2, k, 2)
    assert torch.equal(regressor_prior_loss(p2, q, valid=valid), torch.nn.functional.mse_loss(p2 * valid, q * valid))
    # the mirrored prediction of a pose whose right wrist is unannotated: the swap moves the mark with the target
    r_wrist = sk.keypoints.index("r_wrist")
    valid = torch.ones(2, k, 1)
    valid[:, r_wrist] = 0
    mirrored = q[:, perm].clone()
    mirrored[:, perm.index(r_wrist)] += 0.5  # the predicted point labelled as the right wrist's mirror
    swaps = torch.tensor(sk.side_swaps)
    assert float(regressor_prior_loss(mirrored, q, swaps, valid=valid)) == 0.0
    assert float(regressor_prior_loss(mirrored, q, swaps)) > 0.0


def test_the_supervised_bound_takes_the_swaps_where_its_keypoints_face_either_way(tiny_data, monkeypatch):
    from conftest import tiny_config
    from keypointgan.api import make_eval_set
    from keypointgan.data import Layout
    from keypointgan.demo import split_videos
    from keypointgan.research.supervised import train_supervised

    layout = Layout(tiny_data)
    train, test = split_videos(layout)
    cfg = dataclasses.replace(tiny_config(flip_test=False), regressor_side_swaps="auto")
    es = make_eval_set(layout, test, cfg.model.size)
    assert not train_supervised(cfg, layout, train, es, minutes=None, steps=2, progress=False)["side_swaps"]  # faces one way
    assert train_supervised(dataclasses.replace(cfg, regressor_side_swaps="on"), layout, train, es, minutes=None, steps=2,
                            progress=False)["side_swaps"]

    load = Layout.load_keypoints
    turned = {v.id for v in train[::2]}

    def half_turned(self, video):  # every other video's figure seen from behind: left and right change sides in x
        kp = load(self, video).copy()
        if video.id in turned:
            kp[..., 0] = kp[..., 0].mean() * 2 - kp[..., 0]
        return kp

    monkeypatch.setattr(Layout, "load_keypoints", half_turned)
    assert train_supervised(cfg, layout, train, es, minutes=None, steps=2, progress=False)["side_swaps"]
    assert not train_supervised(dataclasses.replace(cfg, regressor_side_swaps="off"), layout, train, es, minutes=None, steps=2,
                                progress=False)["side_swaps"]
