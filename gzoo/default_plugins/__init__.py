"""The core's own plugins: modules that register components and implement hooks exactly like
a third-party plugin, but ship with gzoo (listed in :data:`gzoo.plugins.DEFAULT_PLUGINS`).

* :mod:`.datasets` -- the built-in datasets (digits, Fashion-MNIST, MNIST, CIFAR-10, folder,
  ring, grid, stacked-*);
* :mod:`.conditioning` -- the ``labels`` conditioner;
* :mod:`.evaluation` -- the metric families, ``gzoo eval`` and periodic evaluation.

Their old homes ``gzoo.datasets``, ``gzoo.conditioning`` and ``gzoo.evaluation`` keep working:
they are the same module objects.
"""
