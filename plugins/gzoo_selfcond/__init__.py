"""gzoo's self-conditioning plugin (Liu et al., "Diverse Image Generation via
Self-Conditioned GANs", CVPR 2020): k-means on discriminator features, with Hungarian
matching between reclusterings, turns any conditional G/D pair into an unsupervised
conditional GAN. ``--cond selfcond --cond-opt k=100``. See docs/selfcond.md."""
