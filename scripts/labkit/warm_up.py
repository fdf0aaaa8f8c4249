"""The warm-up code: the one list of lines that a new kernel and set-up's warm build both run.

- Every new kernel runs it before the notebook's first cell (the launcher's warm-up, see
  kernel.py): evcxr then has built the cell crate and run rust-analyzer over Burn's crates
  (once per kernel, about 40 CPU-seconds), so the student's first cell takes seconds.
- `cargo xtask setup` runs it in a kernel to build the kernel's dependencies, Burn and
  mnist_lab, in the build folder slot-0 (notebooks.py, `warm_up`).

Every notebook's first code cell starts with these `:dep` and `use` lines, in this order, and
no others (test_warm_up.py checks it, so the two cannot drift apart): what the warm-up builds
is what the notebooks load.
"""

import json
from pathlib import Path

#: The `:dep` and `use` lines of every notebook's first code cell, as the notebooks write them
#: (a `:dep` path is relative to notebooks/).
LINES = (
    ':dep mnist_lab = { path = "../mnist_lab" }',
    ':dep burn = "0.22.1"',
    "use mnist_lab::prelude::*;",
)
#: The warm-up's last line: it is a `let` that makes evcxr run rust-analyzer.
LAST = "let kernel_warmed_up: bool = true;"


def dep_and_use_lines(source):
    """The `:dep` and `use` lines of a cell's code, stripped, in order."""
    lines = (line.strip() for line in source.splitlines())
    return [line for line in lines if line.startswith((":dep ", "use "))]


def first_code_cell(notebook):
    """The code of a notebook's first code cell (`notebook`: an .ipynb path)."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    code = next((c for c in cells if c["cell_type"] == "code"), None)
    if code is None:
        return ""
    source = code["source"]
    return source if isinstance(source, str) else "".join(source)


def absolute_path(line, folder):
    """A `:dep ... path = "..."` line with its path made absolute from `folder`, as evcxr makes
    it; any other line as it is."""
    if not (line.startswith(":dep ") and 'path = "' in line):
        return line
    before, rest = line.split('path = "', 1)
    path, after = rest.split('"', 1)
    if not Path(path).is_absolute():
        path = str((Path(folder) / path).resolve())
    return f'{before}path = "{path}"{after}'


def warm_up_code(project):
    """The code to run: LINES for the notebooks of `project` (paths made absolute from its
    notebooks/ folder), then LAST."""
    notebooks = Path(project) / "notebooks"
    return "\n".join([absolute_path(line, notebooks) for line in LINES] + [LAST])
