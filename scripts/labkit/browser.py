"""Looks at live training and the stop button in a real browser, as a student sees them.

A developer's tool, not part of `cargo xtask test` or CI (it needs Chromium and takes a few
minutes). It starts JupyterLab on notebooks/ with the project's kernel, opens the lecture
notebook in headless Chromium driven by Selenium, runs the cells up to the first training
cell, screenshots the cell while it trains (the live progress bar and loss chart), presses the
stop button in the notebook's toolbar, runs the next cell (evaluate on the stopped model) and
screenshots again.

On mnist-mini the lecture's first run (3 epochs of model 1) lasts about a second, too short
to watch, so the browser's copy of the notebook asks for 30 epochs instead (the file on disk
is not changed).

Needs: Debian's `chromium` and `chromium-driver`, `selenium` in .venv, `cargo xtask setup`.

    MNIST_LAB_DATA=../shared/data/mnist-mini .venv/bin/python scripts/labkit browser --out /tmp/shots

Prints what it saw (the progress text, the time from the stop to the cell's end) and writes
mid-run.png, stopped.png and next-cell.png to --out.

`--untrusted NOTEBOOK.ipynb` instead opens an executed notebook (e.g. from .lab/runs, which
JupyterLab has never trusted) without running anything, counts the charts JupyterLab shows
as pictures and the outputs it leaves blank, and saves a screenshot of the first chart
(untrusted.png): JupyterLab renders no SVG from an untrusted notebook, so every chart also
carries a PNG.
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from labkit import ROOT, jupyter_folder

NOTEBOOK = "nonlinearities_and_convolutions.ipynb"
FIRST_TRAINING = "let (model, mut report) = train(model, &data, &config, &device)?;"


def wait(what, check, timeout, every=0.5):
    """Polls `check` until it returns something true; returns it, or fails after `timeout` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def start_lab(port, token, root_dir=ROOT / "notebooks"):
    env = dict(os.environ, JUPYTER_PATH=str(jupyter_folder()))
    lab = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.token={token}",
         f"--ServerApp.root_dir={root_dir}", "--LabApp.expose_app_in_browser=True"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )

    def up():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                return True
        except OSError:
            return False

    wait("JupyterLab to start", up, 120)
    return lab


def browser(profile):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1800", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    service = webdriver.ChromeService(executable_path="/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


# JavaScript run in the page: JupyterLab's application object (exposed by
# --LabApp.expose_app_in_browser) and the notebook open in it.
NOTEBOOK_JS = ("const panel = Array.from(window.jupyterapp.shell.widgets('main'))"
               ".find(w => w.content && w.content.widgets); const nb = panel.content;")


def kernel_status(driver):
    return driver.execute_script(
        NOTEBOOK_JS + "const k = panel.sessionContext.session && panel.sessionContext.session.kernel;"
        "return k ? k.status : null;")


def cell_text(driver, index):
    """The text the cell's output area shows."""
    return driver.execute_script(
        NOTEBOOK_JS + "const c = nb.widgets[arguments[0]];"
        "return c.outputArea ? c.outputArea.node.innerText : '';", index)


def cell_busy(driver, index):
    """Whether the cell is queued or running (its prompt shows [*])."""
    return driver.execute_script(
        NOTEBOOK_JS + "return nb.widgets[arguments[0]].promptNode.innerText.includes('*');", index)


def shoot(driver, index, path):
    """Scrolls the cell into view and saves a screenshot of the window."""
    driver.execute_script(NOTEBOOK_JS + "nb.widgets[arguments[0]].node.scrollIntoView({block: 'start'});",
                          index)
    time.sleep(0.3)
    driver.save_screenshot(str(path))
    print(f"browser: saved {path}", flush=True)


def open_notebook(out, port, token, name):
    """Starts the browser and opens notebook `name` of the JupyterLab on `port`; returns the
    driver once the notebook's cells are there."""
    driver = browser(out / "profile")
    driver.get(f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}")
    wait("the notebook to open", lambda: driver.execute_script(
        "return !!(window.jupyterapp && Array.from(window.jupyterapp.shell.widgets('main'))"
        ".find(w => w.content && w.content.widgets && w.content.widgets.length))"), 120)
    return driver


def close(driver, lab):
    """Quits the browser (if it started) and stops JupyterLab, which shuts its kernels down on
    SIGTERM."""
    if driver is not None:
        driver.quit()
    os.killpg(lab.pid, signal.SIGTERM)
    try:
        lab.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(lab.pid, signal.SIGKILL)


def untrusted(args, out):
    """Opens an executed, untrusted notebook and counts the charts that show."""
    notebook = Path(args.untrusted).resolve()
    token = secrets.token_hex(16)
    lab = start_lab(args.port, token, root_dir=notebook.parent)
    driver = None
    try:
        driver = open_notebook(out, args.port, token, notebook.name)
        time.sleep(3)
        counts = driver.execute_script(
            NOTEBOOK_JS + "let trusted = 0, pictures = 0, svgs = 0, first = -1;"
            "nb.widgets.forEach((c, i) => { if (!c.outputArea) return;"
            "  if (c.model.trusted) trusted++;"
            "  const imgs = c.outputArea.node.querySelectorAll('img').length;"
            "  svgs += c.outputArea.node.querySelectorAll('.jp-RenderedSVG svg, .jp-RenderedSVG img').length;"
            "  pictures += imgs; if (imgs && first < 0) first = i; });"
            "return {trusted, pictures, svgs, first, cells: nb.widgets.length};")
        charts = sum(
            1 for cell in __import__("json").loads(notebook.read_text())["cells"]
            for o in cell.get("outputs", []) if "image/png" in o.get("data", {}))
        print(f"browser: {notebook.name}: {counts['trusted']} trusted cells; "
              f"{charts} outputs carry a PNG; JupyterLab shows {counts['pictures']} pictures "
              f"({counts['svgs']} of them SVG)", flush=True)
        if counts["first"] >= 0:
            shoot(driver, counts["first"], out / "untrusted.png")
        return 0 if charts and counts["pictures"] >= charts else 1
    finally:
        close(driver, lab)


def main(argv):
    parser = argparse.ArgumentParser(prog="labkit browser", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/mnist-lab-browser", help="folder for the screenshots")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the watched run")
    parser.add_argument("--stop-after", type=float, default=8.0,
                        help="seconds of training before pressing stop")
    parser.add_argument("--untrusted", help="an executed notebook to open without trusting it")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.untrusted:
        return untrusted(args, out)

    token = secrets.token_hex(16)
    lab = start_lab(args.port, token)
    driver = None
    try:
        driver = open_notebook(out, args.port, token, NOTEBOOK)
        # The notebook commands (run, stop) act on the active notebook.
        driver.execute_script(NOTEBOOK_JS + "window.jupyterapp.shell.activateById(panel.id);")
        # A new kernel warms up (busy) before it takes the first cell.
        started = time.monotonic()
        wait("the kernel to be ready", lambda: kernel_status(driver) == "idle", 600, every=1)
        print(f"browser: kernel ready in {time.monotonic() - started:.0f} s", flush=True)

        sources = driver.execute_script(
            NOTEBOOK_JS + "return nb.widgets.map(c => c.model.sharedModel.getSource());")
        training = next(i for i, s in enumerate(sources) if FIRST_TRAINING in s)
        config = next(i for i, s in enumerate(sources) if ".with_num_epochs(3)" in s)
        driver.execute_script(
            NOTEBOOK_JS + "const m = nb.widgets[arguments[0]].model.sharedModel;"
            "m.setSource(m.getSource().replace('.with_num_epochs(3)', '.with_num_epochs(' + arguments[1] + ')'));",
            config, args.epochs)
        # Run everything above the training cell, then the training cell.
        driver.execute_script(NOTEBOOK_JS + "nb.activeCellIndex = arguments[0];"
                              "window.jupyterapp.commands.execute('notebook:run-all-above');", training)
        wait("the cells above the training cell", lambda: not any(
            cell_busy(driver, i) for i in range(training)), 600, every=1)
        driver.execute_script(NOTEBOOK_JS + "nb.activeCellIndex = arguments[0];"
                              "window.jupyterapp.commands.execute('notebook:run-cell');", training)
        wait("the live display", lambda: "epoch" in cell_text(driver, training).lower(), 300)
        trained = time.monotonic()
        time.sleep(args.stop_after)
        print(f"browser: mid-run text: {cell_text(driver, training)[:300]!r}", flush=True)
        shoot(driver, training, out / "mid-run.png")

        # The stop button: the square in the notebook's toolbar.
        button = driver.find_element(
            "css selector", "[data-command='notebook:interrupt-kernel'] button, "
            "button[data-command='notebook:interrupt-kernel'], jp-button[data-command='notebook:interrupt-kernel']")
        pressed = time.monotonic()
        button.click()
        wait("the training cell to end", lambda: not cell_busy(driver, training), 60, every=0.05)
        print(f"browser: stop pressed after {pressed - trained:.1f} s of training; the cell ended "
              f"{time.monotonic() - pressed:.2f} s later", flush=True)
        time.sleep(1)
        print(f"browser: after the stop: {cell_text(driver, training)[-400:]!r}", flush=True)
        shoot(driver, training, out / "stopped.png")

        following = training + 1
        while "evaluate(" not in sources[following]:
            following += 1
        driver.execute_script(NOTEBOOK_JS + "nb.activeCellIndex = arguments[0];"
                              "window.jupyterapp.commands.execute('notebook:run-cell');", following)
        time.sleep(1)
        wait("the next cell", lambda: not cell_busy(driver, following), 300)
        print(f"browser: next cell: {cell_text(driver, following)[:300]!r}", flush=True)
        shoot(driver, following - 1, out / "next-cell.png")
        return 0
    finally:
        close(driver, lab)
