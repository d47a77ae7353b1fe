"""Fail when a file the package needs is missing from the wheel.

    python .ci/check_wheel_contents.py REPO WHEEL

Every ``fasterrcnn/**/*.py`` of the checkout, every ``cfgs/*.yml`` (installed as
``fasterrcnn/cfgs/*.yml``) and the compiled ``fasterrcnn/_C`` extension must be in the wheel.
"""

from __future__ import annotations

import os
import sys
import zipfile
from typing import List


def expected_files(repo: str) -> List[str]:
    """Paths inside the wheel that the checkout's package sources and configs must have."""
    expected = []
    package = os.path.join(repo, "fasterrcnn")
    for folder, dirs, files in os.walk(package):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), repo)
                expected.append(rel.replace(os.sep, "/"))
    for name in os.listdir(os.path.join(repo, "cfgs")):
        if name.endswith(".yml"):
            expected.append(f"fasterrcnn/cfgs/{name}")
    return sorted(expected)


def main(repo: str, wheel: str) -> int:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = [path for path in expected_files(repo) if path not in names]
    extension = [n for n in names if n.startswith("fasterrcnn/_C") and n.endswith((".so", ".pyd"))]
    if not extension:
        missing.append("fasterrcnn/_C (compiled extension)")
    if missing:
        print(f"{wheel} lacks {len(missing)} file(s):", *missing, sep="\n  ", file=sys.stderr)
        return 1
    print(f"{os.path.basename(wheel)}: all {len(names)} files present, including {extension[0]}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
