"""Hook implementations of the coc plugin."""
