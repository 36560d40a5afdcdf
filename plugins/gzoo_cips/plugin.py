"""Hook implementations of the ``cips`` plugin."""

from __future__ import annotations
