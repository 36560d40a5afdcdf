"""Hook implementations of the selfcond plugin."""
