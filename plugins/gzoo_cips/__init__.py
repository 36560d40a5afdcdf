"""gzoo's CIPS plugin: conditionally-independent pixel synthesis (Anokhin et al., CVPR 2021).

See docs/cips.md.
"""
