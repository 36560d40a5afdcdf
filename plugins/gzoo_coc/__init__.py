"""gzoo's CoC plugin: Context Clusters (Ma et al., ICLR 2023) and CoC-GAN.

``cocgan`` generator, ``coc`` discriminator, the ``context-cluster`` block for conv models,
the ``clusters`` visualizer and the ``cocgan-paper`` presets. See docs/coc.md.
"""
