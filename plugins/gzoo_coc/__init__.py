"""gzoo_coc plugin (work in progress)."""
