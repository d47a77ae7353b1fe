"""The OpenMP spin default that ``import fasterrcnn`` sets before torch loads."""

import os
import subprocess
import sys

from fasterrcnn._threads import GOMP_SPIN_COUNT, openmp_wait_defaults


def test_spin_count_added_unless_the_user_chose_a_wait():
    assert openmp_wait_defaults({}) == {"GOMP_SPINCOUNT": GOMP_SPIN_COUNT}
    assert openmp_wait_defaults({"PATH": "/bin"}) == {"GOMP_SPINCOUNT": GOMP_SPIN_COUNT}
    assert openmp_wait_defaults({"GOMP_SPINCOUNT": "5"}) == {}
    assert openmp_wait_defaults({"OMP_WAIT_POLICY": "PASSIVE"}) == {}


def test_set_before_torch_is_imported():
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = (
        "import sys, builtins\n"
        "seen = {}\n"
        "real_import = builtins.__import__\n"
        "def spy(name, *args, **kwargs):\n"
        "    if name == 'torch' and 'torch' not in seen:\n"
        "        import os\n"
        "        seen['torch'] = os.environ.get('GOMP_SPINCOUNT')\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = spy\n"
        "import fasterrcnn\n"
        "print(seen['torch'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == GOMP_SPIN_COUNT
