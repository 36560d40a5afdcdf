"""Hook implementations of the ``classic`` plugin."""

from __future__ import annotations

from typing import Any

from gzoo import hookimpl

from . import losses, models, regularizers

GAN = "Goodfellow et al. 2014, Generative Adversarial Nets"
DCGAN = "Radford et al. 2016, arXiv:1511.06434"


@hookimpl
def gzoo_register_components(register: Any) -> None:
    register("generator", "mlp", models.MLPGenerator, paper=GAN)
    register("discriminator", "mlp", models.MLPDiscriminator, paper=GAN)
    register("generator", "dcgan", models.DCGANGenerator, paper=DCGAN)
    register("discriminator", "dcgan", models.DCGANDiscriminator, paper=DCGAN)
    register("loss", "minimax", losses.Minimax, paper=GAN)
    register("loss", "nonsaturating", losses.NonSaturating, paper=GAN, aliases=("ns",))
    register("loss", "wgan", losses.WGAN, paper="Arjovsky et al. 2017, arXiv:1701.07875")
    register("loss", "hinge", losses.Hinge, paper="Lim & Ye 2017, arXiv:1705.02894")
    register("loss", "lsgan", losses.LSGAN, paper="Mao et al. 2017, arXiv:1611.04076")
    register("loss", "ragan", losses.RaGAN, paper="Jolicoeur-Martineau 2019, arXiv:1807.00734")
    register("regularizer", "clip", regularizers.WeightClip, paper="Arjovsky et al. 2017")
    register("regularizer", "gp", regularizers.GradientPenalty, paper="Gulrajani et al. 2017, arXiv:1704.00028")
    register("regularizer", "r1", regularizers.R1, paper="Mescheder et al. 2018, arXiv:1801.04406")
    register("regularizer", "sn", regularizers.SpectralNorm, paper="Miyato et al. 2018, arXiv:1802.05957")
    register("regularizer", "mismatch", regularizers.Mismatch, paper="Reed et al. 2016, arXiv:1605.05396 (GAN-CLS)")


@hookimpl
def gzoo_register_presets(register: Any) -> None:
    register(
        "dcgan-paper",
        {
            "gen": "dcgan",
            "disc": "dcgan",
            "loss": "nonsaturating",
            "gen_opt": {"ch": 64},
            "disc_opt": {"norm": "batch", "ch": 64},
            "optimizer": "adam",
            "lr": 2e-4,
            "betas": [0.5, 0.999],
            "batch_size": 128,
        },
    )
    register(
        "wgan-gp",
        {"loss": "wgan", "reg": ["gp"], "n_critic": 5, "optimizer": "adam", "lr": 1e-4, "betas": [0.0, 0.9]},
    )
