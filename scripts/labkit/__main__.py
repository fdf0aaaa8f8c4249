"""`python scripts/labkit COMMAND ...` or `python -m labkit COMMAND ...`: runs one command of
the package (see labkit/__init__.py for the list)."""

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a folder (`python scripts/labkit`): Python put the package's own folder first on
    # sys.path, where its modules would shadow the standard library's; its parent instead.
    here = Path(__file__).resolve().parent
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))

import labkit  # noqa: E402  (after the sys.path fix above)

USAGE = """usage: labkit COMMAND [options]   (COMMAND --help for its options)

commands: setup, evcxr, lab, kernel, cargo, warm-up, notebooks, strip, test, targets, memory,
second-kernel, browser, class
(see scripts/labkit/__init__.py)"""


def with_project_jupyter():
    """Puts the project's Jupyter folder (the kernelspec) in front of JUPYTER_PATH."""
    paths = [str(labkit.jupyter_folder())]
    if os.environ.get("JUPYTER_PATH"):
        paths += [p for p in os.environ["JUPYTER_PATH"].split(os.pathsep) if p not in paths]
    os.environ["JUPYTER_PATH"] = os.pathsep.join(paths)


def main(argv):
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    # The launcher and the cargo shim run inside the kernel: their environment stays as it is.
    if command == "kernel":
        from labkit import kernel

        return kernel.main(rest)
    if command == "cargo":
        from labkit import cargo_shim

        return cargo_shim.cargo_for_analyzer(rest)
    with_project_jupyter()
    if command == "evcxr":
        from labkit import evcxr_release

        return evcxr_release.main(rest)
    if command in ("setup", "lab"):
        from labkit import install

        return install.main(command, rest)
    if command in ("notebooks", "strip", "warm-up"):
        from labkit import notebooks

        return notebooks.main(command, rest)
    if command == "test":
        from labkit import test_kernel

        return test_kernel.main(rest)
    if command == "targets":
        from labkit import targets

        return targets.main(rest)
    if command == "memory":
        from labkit import memory

        return memory.main(rest)
    if command == "second-kernel":
        from labkit import second_kernel

        return second_kernel.main(rest)
    if command == "browser":
        from labkit import browser

        return browser.main(rest)
    if command == "class":
        from labkit import class_sim

        return class_sim.main(rest)
    print(f"labkit: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
