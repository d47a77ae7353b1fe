"""How long idle OpenMP workers spin, set before torch loads its OpenMP runtime.

GNU OpenMP (libgomp, torch's runtime on Linux) lets a worker that waits for work spin for
``GOMP_SPINCOUNT`` iterations (300000 by default) before it sleeps. Alone on the
machine that saves wake-ups; beside another busy process the spinning workers take the cores
from the ones with work. A shapes training step on 2 cores (``cfgs/shapes.yml``, batch 4; median
of 10 steps, single runs) took 0.57-0.67 s alone and 1.9-4.4 s with a second copy beside it by
default; with a spin count of 10000, 0.58-0.71 s alone and 1.5-1.6 s beside a copy (3000:
0.69-0.70 / 1.2-1.3 s; ``OMP_WAIT_POLICY=PASSIVE``: 0.82 / 1.0-1.1 s). The variable is read
once, when torch is first imported, so this only acts when ``fasterrcnn`` is imported first (the
tools do); a value the user set, or an ``OMP_WAIT_POLICY``, is kept.
"""

import os
from typing import Dict, Mapping

GOMP_SPIN_COUNT = "10000"


def openmp_wait_defaults(environ: Mapping[str, str]) -> Dict[str, str]:
    """The variables to add to ``environ``: ``GOMP_SPINCOUNT`` unless it or
    ``OMP_WAIT_POLICY`` is already set."""
    if "GOMP_SPINCOUNT" in environ or "OMP_WAIT_POLICY" in environ:
        return {}
    return {"GOMP_SPINCOUNT": GOMP_SPIN_COUNT}


os.environ.update(openmp_wait_defaults(os.environ))
