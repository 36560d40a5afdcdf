"""gzoo's timm plugin: any of timm's image architectures as a discriminator (``--disc timm``).

See docs/timm.md.
"""
