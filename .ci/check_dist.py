"""Check the built sdist and wheel in the folder given: the wheel carries the package data
the daemon reads at run time, and the sdist ships no tests it could not run."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGE_DATA = (
    "detector/example_alerts.yaml",
    "detector/service/openapi.json",
    "detector/py.typed",
)
NOT_SHIPPED = ("tests/", "benchmarks/")


def main(folder: Path) -> int:
    [wheel] = folder.glob("*.whl")
    [sdist] = folder.glob("*.tar.gz")
    problems = []
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    problems += [f"{wheel.name}: no {name}" for name in PACKAGE_DATA if name not in in_wheel]
    with tarfile.open(sdist) as archive:
        # Each member is "<name>-<version>/<path>".
        in_sdist = {member.split("/", 1)[-1] for member in archive.getnames()}
    problems += [f"{sdist.name}: no {name}" for name in PACKAGE_DATA if name not in in_sdist]
    problems += [
        f"{sdist.name}: ships {path}, whose tests need the repository"
        for path in sorted(in_sdist)
        if path.startswith(NOT_SHIPPED)
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
