"""The random image changes of training (:mod:`keypointgan.training.perturb`) and the two terms that use
them: Φ's equivariance and η's perturbed renders."""

import dataclasses
import math

import pytest
import torch

from conftest import TinyRun
from keypointgan import geometry
from keypointgan.config import make_config
from keypointgan.errors import InputError
from keypointgan.training import keypointgan_objective
from keypointgan.training.perturb import perturb_renders, random_similarity, warp

LIMBS = ((0, 1), (1, 2), (1, 3))


def poses(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 4, 2, generator=g) * 1.0 - 0.5


def test_perturbed_renders_keep_the_skeleton_and_vary_with_strength():
    q = poses()
    y = geometry.render_signed(q, LIMBS, 48, 0.2)
    assert torch.equal(perturb_renders(y, torch.Generator().manual_seed(0), 0.0, 0.2), y)
    a = perturb_renders(y, torch.Generator().manual_seed(1), 1.0, 0.2)
    b = perturb_renders(y, torch.Generator().manual_seed(1), 1.0, 0.2)
    assert torch.equal(a, b)  # every draw from the generator
    assert a.shape == y.shape and a.min() >= -1 and a.max() <= 1
    change = [float((perturb_renders(y, torch.Generator().manual_seed(2), s, 0.2) - y).abs().mean()) for s in (0.25, 0.5, 1.0)]
    assert 0 < change[0] < change[1] < change[2]
    # the drawing stays where the skeleton is: perturbed and clean images correlate strongly per image
    ya, yc = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), y.flatten(1) - y.flatten(1).mean(1, keepdim=True)
    corr = (ya * yc).sum(1) / (ya.norm(dim=1) * yc.norm(dim=1))
    assert corr.min() > 0.5, corr


def test_line_weight_is_the_render_at_another_sigma():
    # the [0, 1] render raised to γ is the render at σ²/γ, limb by limb: the first change of perturb_renders
    q = poses(2)
    u = geometry.render_skeleton(q, LIMBS, 40, 0.2)
    gamma = 2.0
    assert torch.allclose(u ** gamma, geometry.render_skeleton(q, LIMBS, 40, math.sqrt(0.2 ** 2 / gamma)), atol=1e-5)


def test_warp_moves_a_render_as_the_inverse_transform_moves_its_points():
    q = poses(4) * 0.6
    theta = random_similarity(torch.Generator().manual_seed(3), 4, rotate_deg=20, scale=0.1, shift=0.1)
    assert torch.allclose(warp(geometry.render_signed(q, LIMBS, 64, 0.2), torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]).expand(4, 2, 3),
                               fill=-1.0)[0], geometry.render_signed(q, LIMBS, 64, 0.2), atol=1e-5)
    warped, inside = warp(geometry.render_signed(q, LIMBS, 64, 0.2), theta, fill=-1.0)
    # out(u) = in(θ·u): the warped skeleton's points are θ⁻¹·q
    a, t = theta[:, :, :2], theta[:, :, 2:]
    q_out = torch.linalg.solve(a, (q.transpose(1, 2) - t)).transpose(1, 2)
    expected = geometry.render_signed(q_out, LIMBS, 64, 0.2)
    err = float(((warped - expected).abs() * inside).sum() / inside.sum())
    assert err < 0.01, err  # (the render's cusp on each limb is blunted by bilinear resampling: a mean, not a max)
    forward = geometry.render_signed((a @ q.transpose(1, 2) + t).transpose(1, 2), LIMBS, 64, 0.2)
    assert float(((warped - forward).abs() * inside).sum() / inside.sum()) > 5 * err  # not θ·q
    assert float(((warped - geometry.render_signed(q, LIMBS, 64, 0.2)).abs() * inside).amax()) > 0.5  # it did move
    assert 0.5 < float(inside.mean()) < 1.0  # the corners left the source


class _Pointwise(torch.nn.Module):
    """A Φ that commutes with any warp: a fixed linear map of the channels at each pixel."""

    def forward(self, x):
        return x.mean(1, keepdim=True) * 0.5 - 0.5


class _Shifted(_Pointwise):
    """A Φ that does not: the same, moved three pixels right."""

    def forward(self, x):
        return torch.roll(super().forward(x), 3, dims=-1)


@pytest.mark.parametrize("phi, zero", [(_Pointwise(), True), (_Shifted(), False)])
def test_equivariance_term_is_zero_exactly_for_an_equivariant_phi(tiny_data, tmp_path, phi, zero):
    run = TinyRun(tiny_data, tmp_path / "run")
    nets = dict(run.state.nets, phi=phi)
    cfg = dataclasses.replace(run.state.cfg, w_equivariance=5.0)
    x, xa = next(run.batches())
    kw = dict(skeleton=run.skeleton, rec_loss=run.state.rec_loss, fakes_for_d=lambda y: y)
    terms = keypointgan_objective(nets, x, xa, run.prior[: x.shape[0]], cfg=cfg, gen=torch.Generator().manual_seed(0), **kw)
    loss_eq = float(terms.parts["loss_equivariance"])
    assert (loss_eq < 1e-6) if zero else (loss_eq > 1e-3), loss_eq
    off = keypointgan_objective(nets, x, xa, run.prior[: x.shape[0]], cfg=dataclasses.replace(cfg, w_equivariance=0.0), **kw)
    assert "loss_equivariance" not in off.parts
    assert torch.isclose(terms.losses["g"], off.losses["g"] + 5.0 * terms.parts["loss_equivariance"], rtol=1e-5)


def test_eta_reads_perturbed_renders_in_its_prior_term(tiny_data, tmp_path):
    run = TinyRun(tiny_data, tmp_path / "run")
    x, xa = next(run.batches())
    seen = []
    hook = run.state.nets["eta"].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    kw = dict(skeleton=run.skeleton, rec_loss=run.state.rec_loss, fakes_for_d=lambda y: y)
    q = run.prior[: x.shape[0]]
    try:
        keypointgan_objective(run.state.nets, x, xa, q, cfg=run.state.cfg, **kw)
        clean = seen[1]  # η's calls: Φ's image (G), β(q) (prior term), Φ's image (self term)
        seen.clear()
        cfg = dataclasses.replace(run.state.cfg, regressor_style=1.0)
        keypointgan_objective(run.state.nets, x, xa, q, cfg=cfg, gen=torch.Generator().manual_seed(0), **kw)
    finally:
        hook.remove()
    size, sigma = run.state.cfg.model.size, run.state.cfg.model.sigma
    assert torch.equal(clean, geometry.render_signed(q, run.skeleton, size, sigma))
    assert torch.equal(seen[1], perturb_renders(clean, torch.Generator().manual_seed(0), 1.0, sigma))


def test_the_new_fields_are_checked():
    with pytest.raises(InputError, match="regressor_style"):
        make_config("cpu-64", regressor_style=1.5).validate()
    with pytest.raises(InputError, match="w_equivariance"):
        make_config("cpu-64", w_equivariance=-1.0).validate()
    assert make_config("cpu-64").regressor_style == 0.0 and make_config("paper-128").w_equivariance == 0.0
