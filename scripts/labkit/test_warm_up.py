"""Tests that need no kernel: every notebook's first code cell against the warm-up's lines.

    python scripts/labkit test --no-kernel      (only these; `test` runs them first)
    python -m unittest labkit.test_warm_up      (with scripts/ on sys.path)

The warm-up (warm_up.py) builds what its `:dep` lines name and brings into scope what its
`use` lines do. A notebook whose first cell names another version of Burn, another `:dep` or
another `use` would start in a kernel warmed up for something else (its first cell then
builds afresh, minutes). So every notebook's first code cell must have exactly the warm-up's
`:dep` and `use` lines, in the same order. Standard library only.
"""

import json
import tempfile
import unittest
from pathlib import Path

from labkit import ROOT
from labkit.warm_up import LAST, LINES, dep_and_use_lines, first_code_cell, warm_up_code


def drifted(notebooks):
    """The notebooks in the folder `notebooks` whose first code cell's `:dep` and `use` lines
    are not the warm-up's, as sentences (empty when none)."""
    found = sorted(Path(notebooks).glob("*.ipynb"))
    if not found:
        return [f"no notebooks in {notebooks}"]
    problems = []
    for notebook in found:
        lines = dep_and_use_lines(first_code_cell(notebook))
        if lines != list(LINES):
            problems.append(
                f"{notebook.name}: its first code cell's `:dep` and `use` lines are {lines}, the "
                f"warm-up's (scripts/labkit/warm_up.py, LINES) are {list(LINES)}; make them the same"
            )
    return problems


class FirstCells(unittest.TestCase):
    def test_every_notebook_starts_with_the_warm_up_lines(self):
        problems = drifted(ROOT / "notebooks")
        if problems:
            self.fail("\n".join(problems))

    def test_a_notebook_that_drifts_is_found(self):
        """The check above can fail: two notebooks that start as the warm-up does, then one
        of them with another version of Burn, then with one more `use`."""

        def notebook(lines):
            cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                    "source": "\n".join(lines + ["let x: i32 = 1;"])}
            return json.dumps({"cells": [{"cell_type": "markdown", "metadata": {},
                                          "source": "# A title"}, cell]})

        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            (folder / "a.ipynb").write_text(notebook(list(LINES)))
            (folder / "b.ipynb").write_text(notebook(list(LINES)))
            self.assertEqual(drifted(folder), [])
            other_burn = [line.replace('burn = "', 'burn = "9') for line in LINES]
            self.assertNotEqual(other_burn, list(LINES))
            for doctored in (other_burn, list(LINES) + ["use std::io::Write;"]):
                (folder / "b.ipynb").write_text(notebook(doctored))
                problems = drifted(folder)
                self.assertEqual(len(problems), 1, problems)
                self.assertTrue(problems[0].startswith("b.ipynb: "), problems)

    def test_the_warm_up_code_loads_this_projects_crate(self):
        code = warm_up_code(ROOT).splitlines()
        mnist_lab = (ROOT / "mnist_lab").resolve()
        self.assertEqual(code[0], f':dep mnist_lab = {{ path = "{mnist_lab}" }}')
        self.assertEqual(code[1:], list(LINES[1:]) + [LAST])


def run():
    """Runs these tests; returns whether they all passed."""
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(FirstCells)
    return unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful()


if __name__ == "__main__":
    unittest.main()
