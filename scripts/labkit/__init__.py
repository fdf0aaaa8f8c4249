"""labkit: the notebooks' kernel tooling, in one package (`cargo xtask` hands over to it).

`cargo xtask` finds (or installs) evcxr_jupyter, rust-src and the Python with JupyterLab
(`.venv/`), then runs this package with that Python for everything else:

    .venv/bin/python scripts/labkit COMMAND [options]     (from any folder)
    python -m labkit COMMAND [options]                    (with scripts/ on sys.path)

Commands, and the module that holds each:

    setup      install.py    writes the kernelspec (.lab/jupyter), the build slots' template
                             and the GPU features crate (.lab/evcxr), then the warm build
    evcxr      evcxr_release.py  installs evcxr_jupyter for set-up: evcxr's release binary,
                             its SHA-256 checked, else `cargo install`
    lab        install.py    opens JupyterLab on notebooks/ with the project's kernel
    kernel     kernel.py     the kernel launcher that the kernelspec runs: it takes a build
                             slot (slots.py), starts evcxr_jupyter with the Cargo home of
                             cargo_shim.py, warms it up and runs the proxy (proxy.py)
    cargo      cargo_shim.py the `cargo` that rust-analyzer runs inside the kernel
    warm-up    notebooks.py  builds the kernel by running the warm-up code, times a fresh one
    notebooks  notebooks.py  executes the notebooks headless and checks their outputs
    strip      notebooks.py  removes outputs from notebooks before a commit
    test       test_kernel.py runs the tests that need no kernel (every other test_*.py:
                             test_warm_up.py, every notebook's first cell against the warm-up's
                             lines; test_proxy.py, test_cargo_shim.py, test_slots.py, the
                             launcher's parts), then the launcher's tests on a real kernel,
                             then test_class.py (a class of two on JupyterHub, one kernel
                             killed) (`--no-kernel`: the first only)
    targets    targets.py    measures the README's notebook targets
    memory     memory.py     measures a kernel's memory over several lecture runs
    second-kernel second_kernel.py  times a second kernel made from the template (as
                             another user with --user) and the disk its build slot adds
    browser    browser.py    looks at live training and the stop button in Chromium
    class      class_sim.py  a class, simulated: JupyterHub on loopback, N students running
                             the lecture notebook at once through the hub's proxy; times,
                             memory and CPU per student (`--kill-one`: one kernel killed)

The warm-up code (warm_up.py) is the one list of `:dep` and `use` lines that the launcher runs
in every new kernel and set-up's warm build runs to build it; every notebook's first code
cell starts with those lines, which `test` checks.

Every command but `kernel` and `cargo` puts the project's Jupyter folder (.lab/jupyter, where
the kernelspec is) in front of JUPYTER_PATH, so the tools find the kernel from any folder.
"""

from pathlib import Path

#: The package's folder (scripts/labkit): the kernelspec and the cargo shim run it.
PACKAGE = Path(__file__).resolve().parent
#: The project the package belongs to.
ROOT = PACKAGE.parent.parent
#: The kernel's name, as the notebooks' metadata give it.
KERNEL_NAME = "mnist_lab"
#: The lecture notebook.
LECTURE = ROOT / "notebooks" / "nonlinearities_and_convolutions.ipynb"


def jupyter_folder(root=ROOT):
    """The Jupyter data folder that holds the project's kernelspec."""
    return Path(root) / ".lab" / "jupyter"


def evcxr_folder(root=ROOT):
    """The evcxr build folders ("slots"), their template and the kernel's configuration."""
    return Path(root) / ".lab" / "evcxr"
