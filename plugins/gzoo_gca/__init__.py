"""gzoo's GCA plugin: graph-convolution attention blocks for convolutional GANs (Peng et al.,
ICANN 2021), SAGAN and its non-local block for comparison.

See docs/gca.md.
"""
