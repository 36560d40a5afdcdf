"""gzoo_selfcond plugin (work in progress)."""
