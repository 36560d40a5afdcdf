"""gzoo-drift's tests: gzoo's contract checks for the regularizer, a short real training run,
and the penalty against its closed form."""

import torch
from gzoo_drift import Drift

import gzoo
from gzoo.testing import check_component, check_training


def test_drift_keeps_the_regularizer_contract():
    check_component("regularizer", "drift")  # defaults
    check_component("regularizer", "drift", weight=0.1, every=4)  # and other options


def test_drift_trains_with_a_wasserstein_critic(tmp_path):
    check_training("mlp", "mlp", "wgan", reg=["gp", "drift"], tmp_path=tmp_path)
    assert "reg_drift" in (tmp_path / "run" / "metrics.jsonl").read_text()


def test_drift_is_the_mean_squared_real_logit():
    D = gzoo.create("discriminator", "mlp", image_shape=(2,))
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    penalty = gzoo.create("regularizer", "drift").penalty(D, real, fake, None, None)
    torch.testing.assert_close(penalty, D(real).pow(2).mean())


def test_drift_is_loaded_from_its_entry_point(gzoo_pm):
    assert gzoo_pm.registry.get("regularizer", "drift").plugin == "drift"


class LoudDrift(Drift):
    """A throwaway variant, registered for one test only."""

    def __init__(self, *, weight: float = 1.0, every: int = 1):
        super().__init__(weight=weight, every=every)


class LoudPlugin:
    @gzoo.hookimpl
    def gzoo_register_components(self, register):
        register("regularizer", "loud-drift", LoudDrift)


def test_a_variant_registered_for_one_test(gzoo_plugin):
    gzoo_plugin(LoudPlugin(), "loud")
    check_component("regularizer", "loud-drift")


def test_the_variant_is_gone_after_its_test():
    assert "loud-drift" not in {s.name for s in gzoo.list_components("regularizer")}
