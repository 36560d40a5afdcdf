"""Process settings the ``gzoo`` command chooses before torch loads: how OpenMP's idle threads wait.

torch's OpenMP runtime lets idle worker threads busy-wait for the next parallel operation. When
two jobs share the cores each spins on the other's time, and both crawl (docs/benchmarks.md,
``threads``). ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep at once; waking them then costs each of
the thousands of operations of a CoC-GAN step a little, and a job alone runs slower
(``coc-process-settings``). ``GOMP_SPINCOUNT`` (GNU OpenMP, which torch's Linux wheels use)
bounds the spin instead: an idle worker spins that many times, about ``GOMP_SPINCOUNT / 100``
microseconds, then sleeps, so it is still awake for an operation that follows within that time and
asleep soon after the job stops feeding it. gzoo sets both (other OpenMP runtimes read only the
first). A variable you set yourself wins: with ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` in the
environment, gzoo sets neither (docs/cli.md, "Several jobs on one machine").
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: set before torch loads its OpenMP runtime unless either variable is set: a passive wait
#: (runtimes other than GNU OpenMP read this one) and, for GNU OpenMP, a spin of about
#: 30 microseconds before an idle thread sleeps
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}
#: any of these in the environment: the user chose how OpenMP waits
OPENMP_USER_VARS = tuple(OPENMP_DEFAULTS)


def configure(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put :data:`OPENMP_DEFAULTS` into ``environ`` (``os.environ``) unless the user chose how OpenMP
    waits; returns what was set. Only effective before torch is imported."""
    environ = os.environ if environ is None else environ
    if any(k in environ for k in OPENMP_USER_VARS):
        return {}
    environ.update(OPENMP_DEFAULTS)
    return dict(OPENMP_DEFAULTS)
