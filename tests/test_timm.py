"""timm plugin: a curated list of timm architectures as discriminators on small images, the
BatchNorm swap, names, pretrained weights from local files only, spectral norm, and training
from the CLI (with self-conditioning)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gzoo
from gzoo.backbones import patch_size_for, replace_batch_norm
from gzoo.errors import ShapeError, UsageError

CURATED = ["resnet18", "efficientnet_b0", "convnext_atto", "mobilenetv3_small_050", "vit_tiny_patch16_224"]
SHAPES = [(1, 28, 28), (3, 32, 32)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("model", CURATED)
def test_curated_models_are_discriminators(model, shape):
    torch.manual_seed(0)
    D = gzoo.create("discriminator", "timm", image_shape=shape, model=model)
    x = torch.randn(3, *shape)
    logits, feats = D(x), D.features(x)
    assert logits.shape == (3,) and feats.shape == (3, D.feature_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())  # norm=group is the default
    logits.sum().backward()
    for name, p in D.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{model}: {name} got no finite gradient"
    # one optimizer step on a BCE objective moves the logits the way it should
    opt = torch.optim.SGD(D.parameters(), lr=1e-2)
    target = torch.ones(3)
    before = nn.functional.binary_cross_entropy_with_logits(D(x), target)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = nn.functional.binary_cross_entropy_with_logits(D(x), target)
    assert after < before


def test_small_inputs_use_the_models_own_means():
    vit = gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), model="vit_tiny_patch16_224")
    assert vit.backbone.fitted == "img_size=28, patch_size=4" and vit.backbone.input_side == 28
    assert vit.backbone.net.patch_embed.grid_size == (7, 7)
    convnext = gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), model="convnext_atto")
    assert convnext.backbone.fitted == "output_stride=8" and convnext.backbone.input_side == 28
    mobilenet = gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), model="mobilenetv3_small_050")
    assert mobilenet.backbone.fitted == "bilinear resize to 64" and mobilenet.backbone.input_side == 64  # takes no output_stride
    resized = gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), model="resnet18", fit="resize:40")
    x = torch.randn(2, 1, 28, 28)
    up = nn.functional.interpolate(x, size=(40, 40), mode="bilinear", align_corners=False)
    assert torch.equal(resized.features(x), resized.backbone.net(up))


@pytest.mark.parametrize("side,patch", [(28, 4), (32, 4), (64, 8), (224, 16), (112, 16), (30, 2), (5, 1)])
def test_patch_size_for(side, patch):
    assert patch_size_for(side) == patch
    assert side % patch == 0


def test_a_model_that_cannot_take_the_input_fails_in_one_line(cli, tmp_path):
    with pytest.raises(ShapeError, match=r"timm model 'convnext_atto' cannot take 1x28x28 images"):
        gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), model="convnext_atto", fit="none")
    r = cli("run", "--gen", "dcgan", "--disc", "timm", "--disc-opt", "model=convnext_atto", "--disc-opt", "fit=none",
            "--data", "digits", "--steps", "1", "--quiet", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "cannot take" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "r").exists()


def test_misspelled_model_suggests_timms_names(cli, tmp_path):
    with pytest.raises(UsageError, match=r"timm has no model 'resnet81'; did you mean 'resnet18'"):
        gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), model="resnet81")
    r = cli("run", "--disc", "timm", "--disc-opt", "model=convnxt_atto", "--data", "digits", "--steps", "1",
            "--quiet", "--out", tmp_path / "r")
    assert r.exit_code == 2 and "did you mean 'convnext_atto'" in r.output


@pytest.mark.parametrize("opt", [{"fit": "big"}, {"fit": "resize:0"}, {"norm": "instance"}])
def test_bad_options_are_one_line(opt):
    with pytest.raises(UsageError):
        gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), **opt)


def test_group_norm_features_do_not_depend_on_the_batch():
    """With the default norm=group a sample's features are the same alone or in any batch (train
    mode); with norm=batch they are not (the hazard the swap removes)."""
    torch.manual_seed(0)
    x = torch.randn(4, 1, 28, 28)
    for norm, independent in (("group", True), ("layer", True), ("batch", False)):
        D = gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), model="resnet18", norm=norm).train()
        alone, together = D.features(x[:1]), D.features(x)[:1]
        assert torch.allclose(alone, together, atol=1e-5) == independent, norm


def test_replace_batch_norm_keeps_the_activation_of_timm_norm_act_layers():
    timm = pytest.importorskip("timm")
    from timm.layers import BatchNormAct2d

    m = nn.Sequential(BatchNormAct2d(48, act_layer=nn.ReLU), nn.BatchNorm2d(12))
    assert replace_batch_norm(m, "group") == 2
    first, second = m[0], m[1]
    assert isinstance(first, nn.Sequential) and isinstance(first[0], nn.GroupNorm) and first[0].num_groups == 16
    assert isinstance(first[-1], nn.ReLU)
    assert isinstance(second, nn.GroupNorm) and second.num_groups == 4  # gcd(12, 32)
    x = torch.randn(2, 48, 3, 3)
    assert (m[0](x) >= 0).all()  # the activation still acts
    assert timm is not None


def test_spectral_norm_regularizer_wraps_timm_models():
    D = gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), model="resnet18")
    D = gzoo.create("regularizer", "sn").wrap_discriminator(D)
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    D(torch.randn(2, 1, 28, 28)).sum().backward()


def test_pretrained_weights_come_only_from_local_files(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    # empty caches and no network: the lookup must answer at once, from disk only
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(UsageError, match="never downloads; pass --disc-opt checkpoint=PATH"):
        gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), model="resnet18", pretrained=True)
    src = timm.create_model("resnet18")
    torch.save(src.state_dict(), tmp_path / "r18.pth")
    D = gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), model="resnet18",
                    checkpoint=str(tmp_path / "r18.pth"), norm="batch")
    assert torch.equal(D.backbone.net.layer2[0].conv1.weight, src.layer2[0].conv1.weight)
    # timm adapts the RGB stem to one channel by summing over the input channels
    assert torch.allclose(D.backbone.net.conv1.weight, src.conv1.weight.sum(1, keepdim=True), atol=1e-5)
    with pytest.raises(UsageError, match="is not a file"):
        gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), checkpoint=str(tmp_path / "missing.pth"))


def test_conditional_projection_head():
    D = gzoo.create("discriminator", "timm", image_shape=(1, 28, 28), num_classes=10, model="resnet18")
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    h = D.features(x)
    expected = D.head.linear(h)[:, 0] + (D.head.embed(y) * h).sum(1)
    assert torch.allclose(D(x, y), expected, atol=1e-6)


@pytest.mark.parametrize("cond", [[], ["--cond", "selfcond", "--cond-opt", "k=3", "--cond-opt", "subset=100",
                                       "--cond-opt", "recluster_every=2"]], ids=["plain", "selfcond"])
def test_dcgan_with_timm_discriminator_trains_from_the_cli(cli, tmp_path, cond):
    out = tmp_path / "r"
    r = cli("run", "--gen", "dcgan", "--disc", "timm", "--disc-opt", "model=resnet18", "--data", "digits",
            "--gen-opt", "ch=8", "--steps", "2", "--batch-size", "8", "--sample-every", "0", "--quiet",
            "--out", out, *cond)
    assert r.exit_code == 0, r.output
    assert (out / "checkpoints" / "last.pt").exists()


# -- timm as the evaluation backbone ----------------------------------------------------------


def test_timm_feature_model_is_trained_cached_and_used(monkeypatch):
    from gzoo.default_plugins.evaluation import classifier_for, evaluate_samples
    from gzoo.metrics import features as feat

    tiny = feat.TrainSettings(max_steps=3, batch_size=16)
    monkeypatch.setattr(feat, "DEFAULT_SETTINGS", tiny)
    trained = []
    real_train = feat.train_classifier
    monkeypatch.setattr(feat, "train_classifier", lambda *a, **k: trained.append(k) or real_train(*a, **k))
    clf = classifier_for("digits", 16, feature_model="timm:resnet18", progress=False)
    assert isinstance(clf.net, feat.TimmNet) and clf.net.body.name == "resnet18"
    assert clf.meta["feature_model"] == "timm:resnet18"
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    assert clf.features(x).shape == (5, 512)  # resnet18's pooled width
    assert torch.allclose(clf.features(x), clf.net.body(x), atol=1e-6)
    # cached apart from LeNet's, and loaded back without retraining
    names = sorted(p.name for p in feat.cache_dir().glob("*.pt"))
    assert len(names) == 1 and "-timm-resnet18-" in names[0]
    again = classifier_for("digits", 16, feature_model="timm:resnet18", progress=False)
    assert len(trained) == 1 and torch.equal(again.features(x), clf.features(x))
    lenet = classifier_for("digits", 16, progress=False)
    assert lenet.features(x).shape == (5, 128) and len(trained) == 2
    # FID in the timm model's features, computed independently from the cached classifier
    from gzoo.metrics import fid_from_features

    samples = torch.rand(40, 1, 16, 16) * 2 - 1
    res = evaluate_samples(samples, "digits", metrics=["fid_lenet"], feature_model="timm:resnet18", progress=False)
    assert res["feature_model"] == "timm:resnet18"
    from gzoo.default_plugins.evaluation import dataset_maker

    data = dataset_maker("digits")(resolution=16)
    g = torch.Generator().manual_seed(0)
    real, _ = data.get_batch(torch.randperm(len(data), generator=g)[:40])
    assert res["fid_lenet"] == pytest.approx(fid_from_features(clf.features(real), clf.features(samples)), rel=1e-6)


def test_eval_command_feature_model_errors_are_one_line(cli, tmp_path):
    out = tmp_path / "r"
    r = cli("run", "--data", "digits", "--gen-opt", "ch=8", "--disc-opt", "ch=8", "--steps", "1", "--batch-size", "8",
            "--sample-every", "0", "--quiet", "--out", out)
    assert r.exit_code == 0, r.output
    for bad, msg in (("timm:resnt18", "did you mean 'resnet18'"), ("inception", "must be 'lenet' or 'timm:NAME'")):
        r = cli("eval", "--run", out, "--n", "50", "--feature-model", bad)
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
    assert not (out / "eval.json").exists()
