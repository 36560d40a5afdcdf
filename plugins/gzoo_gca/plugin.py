"""Hook implementations of the ``gca`` plugin."""

from __future__ import annotations
