# gzoo's test kit as a pytest plugin: the `gzoo_pm` and `gzoo_plugin` fixtures.
pytest_plugins = ["gzoo.testing"]
