"""CIPS plugin: pixel independence as properties, chunked synthesis, ModFC against per-sample
weights, sampling options (resolution, crop, region, panorama), patch training, the resnet
discriminator, presets and end-to-end training and sampling from the CLI."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import gzoo
from gzoo.errors import UsageError
from gzoo.testing import check_component
from gzoo_cips.layers import ModFC, pixel_noise
from gzoo_cips.models import CIPSGenerator, ResNetDiscriminator, minibatch_stddev
from gzoo_cips.plugin import ema_decay

pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: small generators covering every structural option
CONFIGS = {
    "skip": {},
    "res": {"variant": "res"},
    "ne": {"embeddings": False},
    "panorama": {"panorama": 3},
    "conditional": {"num_classes": 3},
    "no-noise": {"noise": False},
}


def small(shape=(3, 12, 16), **opts) -> CIPSGenerator:
    torch.manual_seed(0)
    opts = {"width": 16, "depth": 5, "latent_dim": 8, "n_mlp": 2, **opts}
    return CIPSGenerator(image_shape=shape, **opts).eval()


def labels_for(G, n):
    return torch.arange(n) % G.num_classes if G.num_classes else None


# -- pixel independence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_one_pixel_has_zero_gradient_wrt_every_other_pixels_coordinates(name):
    G = small(**CONFIGS[name])
    z = torch.randn(2, G.latent_dim, generator=torch.Generator().manual_seed(1))
    pos, _, pix, _ = G.coordinates(resolution="5x7", region="-0.9,-0.8,0.7,0.95")
    pos = pos.clone().requires_grad_(True)  # off the training grid: embeddings interpolated from pos
    w = G.style(z, labels_for(G, 2))
    from gzoo_cips.layers import latent_seeds

    rgb = G.pixels(w, latent_seeds(z), pos, None, pix)  # (N, P, C)
    for p in (0, 13, pos.shape[1] - 1):
        (g,) = torch.autograd.grad(rgb[:, p].sum(), pos, retain_graph=True)
        others = torch.cat([g[:, :p], g[:, p + 1 :]], 1)
        assert torch.equal(others, torch.zeros_like(others)), f"pixel {p} depends on other pixels' coordinates"
        assert g[:, p].abs().sum() > 0, "the pixel must depend on its own coordinates"


def _ops_of(fn) -> set[str]:
    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.add(str(func.overloadpacket.__name__))
            return func(*args, **(kwargs or {}))

    with Record() as rec:
        fn()
    return rec.ops


@pytest.mark.parametrize("name", CONFIGS)
def test_no_convolution_and_no_attention_anywhere_in_cips(name):
    G = small(**CONFIGS[name]).train()
    assert not [m for m in G.modules() if isinstance(m, nn.modules.conv._ConvNd | nn.MultiheadAttention)]
    z = torch.randn(2, G.latent_dim)
    ops = _ops_of(lambda: (G(z, labels_for(G, 2)).sum().backward(),
                           G.synthesize(z, labels_for(G, 2), resolution=9, region="-2,-1,2,1", chunk=7)))
    bad = {o for o in ops if "conv" in o or "attention" in o or "softmax" in o or "unfold" in o or "pool" in o}
    assert not bad, f"cips ran {sorted(bad)}"
    assert "mm" in ops or "bmm" in ops or "addmm" in ops  # the recorder did see the matmuls


# -- chunked synthesis ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("opts", [{}, {"resolution": "9x20"}, {"region": "-1.5,0,0.5,1.2", "resolution": 8},
                                  {"crop": "2,3,6,9"}])
def test_chunks_in_any_order_equal_full_synthesis(name, opts):
    G = small(**CONFIGS[name])
    z = torch.randn(3, G.latent_dim, generator=torch.Generator().manual_seed(2))
    y = labels_for(G, 3)
    full = G.synthesize(z, y, **opts)
    for chunk in (1, 7, 50):
        assert torch.allclose(G.synthesize(z, y, chunk=chunk, **opts), full, atol=1e-5), chunk
    # by hand, chunks in a random order, each pixel computed once and scattered back
    from gzoo_cips.layers import latent_seeds

    pos, grid_idx, pix, (h, w) = G.coordinates(**opts)
    part = G.coordinates(**opts, start=4, stop=11)  # what one chunk builds: a slice of the whole
    assert torch.equal(part[0], pos[:, 4:11]) and torch.equal(part[2], pix[:, 4:11])
    assert (part[1] is None) == (grid_idx is None) and (part[1] is None or torch.equal(part[1], grid_idx[:, 4:11]))
    order = torch.randperm(pos.shape[1], generator=torch.Generator().manual_seed(3))
    out = torch.full((3, pos.shape[1], G.channels), float("nan"))
    with torch.no_grad():
        wst = G.style(z, y)
        for idx in order.split(5):
            gi = None if grid_idx is None else grid_idx[:, idx]
            out[:, idx] = G.pixels(wst, latent_seeds(z), pos[:, idx], gi, pix[:, idx])
    assert torch.allclose(out.transpose(1, 2).reshape(3, -1, h, w), full, atol=1e-5)


# -- ModFC ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("activate", [True, False])
def test_modfc_activation_modulation_equals_per_sample_weights(demodulate, activate):
    torch.manual_seed(4)
    layer = ModFC(6, 5, 4, demodulate=demodulate, activate=activate).double()
    with torch.no_grad():
        layer.bias.normal_()
        layer.noise_strength.fill_(0.3)
    x, wst, noise = torch.randn(3, 11, 6).double(), torch.randn(3, 4).double(), torch.randn(3, 11).double()
    s = layer.affine(wst)
    # StyleGAN2's modulated weights, one (out, in) matrix per sample
    weights = layer.weight[None] / math.sqrt(6) * s[:, None, :]  # (N, out, in)
    if demodulate:
        weights = weights / torch.sqrt(weights.pow(2).sum(2, keepdim=True) + 1e-8)
    ref = torch.einsum("npi,noi->npo", x, weights) + 0.3 * noise[..., None] + layer.bias
    if activate:
        ref = torch.where(ref > 0, ref, 0.2 * ref) * math.sqrt(2)
    assert torch.allclose(layer(x, s, noise), ref, atol=1e-12, rtol=0)


def test_demodulated_outputs_have_unit_expected_scale():
    torch.manual_seed(5)
    layer = ModFC(64, 32, 8, activate=False, noise=False)
    x = torch.randn(4, 20000, 64)  # unit-variance inputs
    s = layer.affine(torch.randn(4, 8)) * torch.rand(4, 64) * 3  # arbitrary per-sample styles
    with torch.no_grad():
        out = layer(x, s) - layer.bias
    var = out.var(1)  # (N, out): each output channel of each sample
    assert torch.allclose(var, torch.ones_like(var), atol=0.05), var.min().item()
    plain = ModFC(64, 32, 8, activate=False, noise=False, demodulate=False)
    with torch.no_grad():
        assert not torch.allclose(plain(x, s).var(1), torch.ones_like(var), atol=0.2)  # demodulation is what does it


def test_pixel_noise_is_a_function_of_seed_pixel_and_layer():
    seeds = torch.tensor([1, 2, 3])
    a = pixel_noise(seeds, torch.arange(50000)[None], 0)
    assert abs(float(a.mean())) < 0.02 and abs(float(a.std()) - 1) < 0.02
    perm = torch.randperm(50000)
    assert torch.equal(pixel_noise(seeds, perm[None], 0), a[:, perm])
    assert not torch.equal(pixel_noise(seeds, torch.arange(50000)[None], 1), a)
    assert not torch.equal(a[0], a[1])


# -- sampling options -------------------------------------------------------------------------------------


def test_training_grid_resolution_region_and_crop_agree():
    G = small()
    z = torch.randn(2, G.latent_dim)
    with torch.no_grad():
        img = G(z)
    assert img.shape == (2, 3, 12, 16)
    assert torch.equal(G.synthesize(z), img)
    assert torch.equal(G.synthesize(z, resolution="12x16"), img)
    # chunks equal full synthesis to float tolerance (GEMMs of other sizes round differently)
    torch.testing.assert_close(G.sample(2, generator=torch.Generator().manual_seed(0), resolution="12x16"),
                               G.sample(2, generator=torch.Generator().manual_seed(0), chunk=17), atol=1e-5, rtol=0)
    # options draw the same latents as plain sampling: the same seed gives the same images
    assert torch.equal(G.sample(2, generator=torch.Generator().manual_seed(0), resolution="12x16"),
                       G.sample(2, generator=torch.Generator().manual_seed(0)))
    # the interpolated path (region = the training canvas) reads the embeddings where they are
    assert torch.allclose(G.synthesize(z, region="-1,-1,1,1"), img, atol=1e-5)
    assert torch.equal(G.synthesize(z, crop="3,4,5,6"), img[:, :, 3:8, 4:10])
    big = G.synthesize(z, resolution="23x31")
    assert big.shape == (2, 3, 23, 31)
    assert torch.equal(G.synthesize(z, resolution="23x31", crop="10,0,13,31"), big[:, :, 10:])
    # a higher resolution samples the same canvas: its corners are the training image's corners
    assert torch.allclose(big[..., 0, 0], img[..., 0, 0], atol=1e-5)
    assert torch.allclose(big[..., -1, -1], img[..., -1, -1], atol=1e-5)
    assert G.synthesize(z, resolution=5).shape == (2, 3, 5, 5)
    assert G.synthesize(z, resolution=(7, 9)).shape == (2, 3, 7, 9)
    # a region twice as large at twice the resolution contains the training canvas
    wide = G.synthesize(z, region="-3,-1,1,1", resolution="12x31")
    assert torch.allclose(wide[..., 15:], img, atol=1e-5)


def test_panorama_closes_without_a_seam():
    G = small(panorama=4)
    z = torch.randn(2, G.latent_dim)
    pano = G.synthesize(z, panorama=40)
    assert pano.shape == (2, 3, 12, 40)
    after = G.synthesize(z, panorama=40, crop="0,39,12,3")  # columns 39, 40 (= 0), 41 (= 1)
    assert torch.equal(after[..., 0], pano[..., 39])
    assert torch.equal(after[..., 1], pano[..., 0])  # the column after the last is the first
    assert torch.equal(after[..., 2], pano[..., 1])
    step = (pano[..., 1:] - pano[..., :-1]).abs().mean()
    assert step > 1e-3  # neighbouring columns do differ: the equality above is not a flat image
    assert torch.allclose(G.synthesize(z, panorama=40, chunk=33), pano, atol=1e-5)


def test_cylindrical_model_trains_on_every_column_of_its_turn():
    G = small(shape=(1, 6, 8), panorama=3).train()
    torch.manual_seed(0)
    z = torch.randn(64, G.latent_dim)
    G(z).sum().backward()
    col_grad = G.embedding.grad.abs().sum((0, 1))  # (3 * 8,)
    assert col_grad.shape == (24,) and bool((col_grad > 0).all())
    G.eval()
    with torch.no_grad():  # in eval mode the image is the turn's first W columns
        assert torch.allclose(G(z[:2]), G.synthesize(z[:2], panorama=24, crop="0,0,6,8", resolution="6x24"), atol=1e-5)


@pytest.mark.parametrize("opts, message", [
    ({"resolution": "abc"}, "resolution must be"),
    ({"resolution": 0}, "resolution must be positive"),
    ({"chunk": -3}, "chunk must be"),
    ({"crop": "1,2,3"}, "crop must be"),
    ({"crop": "10,0,5,5"}, "reaches outside"),
    ({"region": "0,0,0,1"}, "X0 != X1"),
    ({"panorama": 64}, "needs a cylindrical cips"),
    ({"resolutoin": 64}, "did you mean resolution"),
])
def test_bad_sampling_options_are_one_clear_line(opts, message):
    G = small()
    with pytest.raises(UsageError, match=message):
        G.sample(1, **opts)


# -- patch training -----------------------------------------------------------------------------------------


def test_patch_training_synthesises_windows_of_the_full_image():
    G = small(crop=5).train()
    z = torch.randn(6, G.latent_dim)
    with torch.no_grad():
        patches = G(z)
        G.eval()
        full = G(z)
    assert patches.shape == (6, 3, 5, 5) and full.shape == (6, 3, 12, 16)
    for n in range(6):  # each patch is exactly one window of the same image (same z, same noise)
        hits = [(t, c) for t in range(8) for c in range(12)
                if torch.allclose(full[n, :, t : t + 5, c : c + 5], patches[n], atol=1e-6)]
        assert len(hits) == 1, (n, hits)


def test_resnet_discriminator_cuts_real_images_to_patches():
    torch.manual_seed(0)
    D = ResNetDiscriminator(image_shape=(1, 28, 28), crop=12, ch=8)
    assert D.stage_resolutions() == [12, 6]
    x = torch.randn(4, 1, 28, 28)
    assert D(x).shape == (4,) and D(x[:, :, :12, :12]).shape == (4,)
    D.eval()
    assert torch.equal(D(x), D(x[:, :, 8:20, 8:20]))  # eval: the centre window


def test_patch_training_end_to_end(cli, tmp_path):
    out = tmp_path / "patch"
    r = cli("run", "--gen", "cips", "--disc", "resnet", "--loss", "nonsaturating", "--data", "digits",
            "--gen-opt", "width=16", "--gen-opt", "depth=3", "--gen-opt", "crop=14",
            "--disc-opt", "ch=8", "--disc-opt", "crop=14", "--steps", "2", "--batch-size", "8",
            "--sample-every", "0", "--quiet", "--threads", "1", "--out", out)
    assert r.exit_code == 0, r.output
    r = cli("sample", "--run", out, "--n", "2", "--out", tmp_path / "s.pt", "--threads", "1")
    assert r.exit_code == 0, r.output
    assert torch.load(tmp_path / "s.pt").shape == (2, 1, 28, 28)


# -- discriminator ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, stages", [((1, 28, 28), [28, 14, 7]), ((3, 32, 32), [32, 16, 8, 4]),
                                           ((3, 64, 64), [64, 32, 16, 8, 4]), ((1, 24, 40), [24, 12, 6])])
def test_resnet_stages_and_block_insertion(shape, stages):
    D = gzoo.create("discriminator", "resnet", image_shape=shape, ch=8)
    assert D.stage_resolutions() == stages
    x = torch.rand(4, *shape) * 2 - 1
    assert D(x).shape == (4,)
    D2 = gzoo.create("discriminator", "resnet", image_shape=shape, ch=8, insert=f"context-cluster@{stages[1]}")
    assert len(D2.stages[1].after) == 1 and D2(x).shape == (4,)
    with pytest.raises(UsageError, match="valid resolutions"):
        gzoo.create("discriminator", "resnet", image_shape=shape, ch=8, insert="context-cluster@5")


def test_resnet_trains_against_another_generator(cli, tmp_path):
    r = cli("run", "--gen", "dcgan", "--disc", "resnet", "--loss", "hinge", "--data", "digits", "--gen-opt", "ch=8",
            "--disc-opt", "ch=8", "--cond", "labels", "--steps", "2", "--batch-size", "8", "--sample-every", "0",
            "--quiet", "--threads", "1", "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output


def test_minibatch_stddev_matches_a_loop():
    x = torch.randn(8, 3, 2, 2)
    out = minibatch_stddev(x, 4)
    assert out.shape == (8, 4, 2, 2)
    for n in range(8):
        group = [m for m in range(8) if m % 2 == n % 2]  # groups interleave: sample n with n +- 2, 4, 6
        ref = x[group].std(0, unbiased=False).add(0).pow(2).add(1e-8).sqrt().mean()
        assert torch.allclose(out[n, 3], ref.expand(2, 2), atol=1e-6)
    assert minibatch_stddev(x[:6], 4).shape == (6, 4, 2, 2)  # 6 samples: groups of 3


# -- contract, presets, CLI -----------------------------------------------------------------------------------


@pytest.mark.parametrize("opts", [{"width": 16, "depth": 3}, {"width": 16, "variant": "res", "embeddings": False}])
def test_cips_keeps_the_contract(opts):
    check_component("generator", "cips", **opts)


def test_resnet_keeps_the_contract():
    check_component("discriminator", "resnet", ch=8)


def test_presets_follow_the_paper(pm):
    p = pm.registry.get_preset("cips-paper")
    assert (p["gen"], p["disc"], p["loss"], p["reg"]) == ("cips", "resnet", "nonsaturating", ["r1"])
    assert p["reg_opt"]["r1"] == {"weight": 10.0, "every": 16}
    assert p["lr"] == 0.002 and p["betas"] == [0.0, 0.99]
    assert p["lr_d"] == pytest.approx(0.002 * 16 / 17)
    assert p["ema"] ** (10_000 / p["batch_size"]) == pytest.approx(0.5)  # a 10k-image half-life
    assert p["gen_opt"]["width"] == 512 and p["gen_opt"]["depth"] == 15 and p["gen_opt"]["n_mlp"] == 8
    s = pm.registry.get_preset("cips-small")
    assert s["ema"] ** (10_000 / s["batch_size"]) == pytest.approx(0.5)
    assert ema_decay(100, 1) ** 100 == pytest.approx(0.5)


def test_bad_model_options_are_one_line():
    with pytest.raises(UsageError, match="depth must be odd"):
        gzoo.create("generator", "cips", image_shape=(1, 28, 28), depth=4)
    with pytest.raises(UsageError, match="variant must be one of skip, res"):
        gzoo.create("generator", "cips", image_shape=(1, 28, 28), variant="resnet")


def test_train_then_sample_at_twice_the_resolution_in_chunks_and_as_a_panorama(cli, tmp_path):
    base = ["--gen", "cips", "--disc", "resnet", "--loss", "nonsaturating", "--reg", "r1", "--data", "digits",
            "--gen-opt", "width=16", "--gen-opt", "depth=3", "--disc-opt", "ch=8", "--steps", "3",
            "--batch-size", "8", "--sample-every", "0", "--quiet", "--threads", "1"]
    flat, cyl = tmp_path / "flat", tmp_path / "cyl"
    r = cli("run", *base, "--out", flat)
    assert r.exit_code == 0, r.output
    r = cli("sample", "--run", flat, "--n", "3", "--out", tmp_path / "big.pt", "--opt", "resolution=56",
            "--opt", "chunk=300", "--threads", "1")
    assert r.exit_code == 0, r.output
    big = torch.load(tmp_path / "big.pt")
    assert big.shape == (3, 1, 56, 56) and bool(big.abs().le(1).all())
    r = cli("sample", "--run", flat, "--n", "3", "--out", tmp_path / "whole.pt", "--opt", "resolution=56",
            "--threads", "1")
    assert torch.allclose(torch.load(tmp_path / "whole.pt"), big, atol=1e-5)  # chunks = full synthesis
    # sampling options keep the latents of plain sampling: at the training size, the same images
    r = cli("sample", "--run", flat, "--n", "3", "--out", tmp_path / "plain.pt", "--threads", "1")
    assert r.exit_code == 0, r.output
    r = cli("sample", "--run", flat, "--n", "3", "--out", tmp_path / "same.pt", "--opt", "resolution=28",
            "--opt", "chunk=100", "--threads", "1")
    assert r.exit_code == 0, r.output
    assert torch.allclose(torch.load(tmp_path / "same.pt"), torch.load(tmp_path / "plain.pt"), atol=1e-5)
    r = cli("sample", "--run", flat, "--n", "2", "--out", tmp_path / "x.png", "--opt", "resolution=7x9x3")
    assert r.exit_code == 2 and "resolution must be" in r.output and len(r.output.strip().splitlines()) == 1
    r = cli("sample", "--run", flat, "--n", "2", "--out", tmp_path / "x.png", "--opt", "panorama=100")
    assert r.exit_code == 2 and "cylindrical" in r.output

    r = cli("run", *base, "--gen-opt", "panorama=4", "--out", cyl)
    assert r.exit_code == 0, r.output
    r = cli("sample", "--run", cyl, "--n", "2", "--out", tmp_path / "pano.pt", "--opt", "panorama=112",
            "--opt", "crop=0,0,28,113", "--opt", "chunk=1000", "--threads", "1")
    assert r.exit_code == 0, r.output
    pano = torch.load(tmp_path / "pano.pt")
    assert pano.shape == (2, 1, 28, 113) and torch.equal(pano[..., 112], pano[..., 0])
    r = cli("sample", "--run", cyl, "--n", "2", "--out", tmp_path / "pano.png", "--opt", "panorama=112")
    assert r.exit_code == 0 and (tmp_path / "pano.png").exists()
