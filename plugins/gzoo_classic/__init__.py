"""gzoo's classic baselines: the original MLP GAN, DCGAN, the standard losses and
regularizers. Registered through the ``gzoo`` entry point ``classic``."""
