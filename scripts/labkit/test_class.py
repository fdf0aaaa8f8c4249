"""The class simulation's short version (class_sim.py, `labkit class`): JupyterHub and its proxy
on the loopback interface, two students who log in, start their servers and run the lecture
notebook at the same time up to its first accuracy line (STEPS training steps per run), and
the second student's kernel killed (SIGKILL) while one of its training cells runs.

    .venv/bin/python scripts/labkit test         (after the kernel's tests; not with --no-kernel)
    python -m unittest labkit.test_class         (with scripts/ on sys.path)

It needs what a class needs: `cargo xtask setup` (the kernel and its prebuilt build), jupyterhub
in .venv (PyPI) and configurable-http-proxy (npm); when one is missing the test fails and says
how to install it (it is never skipped). Every wait has a timeout. It prints its duration and
the simulation's table, for reading: nothing here passes or fails on a duration.
"""

import time
import unittest

from labkit import class_sim

STEPS = 20
#: The whole class: two kernels' start and warm-up, eleven cells each (minutes on 2 cores).
TIMEOUT = 1200
#: Any one wait (a server's start, one cell).
WAIT = 600


class ShortClass(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        started = time.monotonic()
        cls.report = class_sim.simulate(students=2, max_steps=STEPS, kill_one=True,
                                        timeout=TIMEOUT, wait=WAIT)
        print(f"\n{class_sim.table(cls.report)}\nthe short class took "
              f"{time.monotonic() - started:.0f} s", flush=True)
        cls.survivor, cls.victim = cls.report["students"]

    def test_the_class_ran_to_its_end(self):
        self.assertIsNone(self.report.get("stopped"))

    def test_the_other_student_ran_every_cell_to_the_first_trained_model(self):
        """The survivor ran every code cell up to the one that prints the first accuracy, each
        ok, and its outputs pass the notebook checks (no error, no stderr, no panic, the loss
        plot, the accuracy line)."""
        cells = class_sim.lecture_cells()
        first_accuracy = next(i for i, code in enumerate(cells) if "evaluate(" in code)
        survivor = self.survivor
        self.assertEqual(survivor["problems"], [])
        self.assertEqual(survivor["status"], "ok")
        self.assertEqual((survivor["cells_ok"], survivor["cells_run"]), (first_accuracy + 1,) * 2)
        self.assertRegex(survivor["accuracy"], r"^Accuracy of the network on the \d+ test images")
        self.assertGreater(survivor["first_model_s"], survivor["server_ready_s"])

    def test_the_killed_kernel_lost_only_its_own_student_s_work(self):
        """The victim's kernel was killed during a training cell: all its processes are gone,
        the victim's server still answers and told the student the kernel died, and the victim
        did not get to the first trained model."""
        kill = self.report["kill"]
        self.assertTrue(kill["killed"], kill)
        self.assertRegex(class_sim.lecture_cells()[kill["cell"]], class_sim.TRAINS)
        self.assertGreater(kill["processes"], 1, kill)
        self.assertEqual(kill["left"], [], kill)
        self.assertTrue(kill["reported"], "the victim's server never said its kernel died")
        self.assertTrue(kill["server_answers"], "the victim's server stopped answering")
        self.assertTrue(kill["closed"], "the victim's notebook could not be closed after the kill")
        self.assertNotEqual(self.victim["status"], "ok")
        self.assertNotIn("first_model_s", self.victim)
        self.assertTrue(any("kernel is" in p for p in self.victim["problems"]), self.victim)

    def test_each_student_s_memory_was_sampled(self):
        for student in self.report["students"]:
            self.assertGreater(student["server_peak_mb"], 0, student)
            self.assertGreater(student["kernel_peak_mb"], student["server_peak_mb"], student)

    def test_nothing_is_left_behind(self):
        """The hub, its proxy, the servers and kernels are gone, and the temporary folder: the
        orderly way (each notebook closed, each server stopped through the hub, then the hub)
        left no process for the last sweep to kill."""
        self.assertEqual(self.report["left_behind"], [])
        self.assertTrue(self.report["root_removed"])
        self.assertEqual(class_sim.marked(self.report["mark"]), [])


if __name__ == "__main__":
    unittest.main()
