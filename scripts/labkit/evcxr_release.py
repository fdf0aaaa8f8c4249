"""evcxr_jupyter from evcxr's release binaries where one exists, else from source:

    labkit evcxr --dest DIR [--series 0.22] [--cargo PATH]

`cargo xtask setup` runs this when it finds no evcxr_jupyter of the tested series. evcxr
publishes a binary for three platforms with each release (x86_64 Linux, aarch64 macOS,
x86_64 Windows: `evcxr_jupyter-v0.22.0-x86_64-unknown-linux-gnu.tar.gz`). For this
platform, set-up

1. looks up the tarball's SHA-256 in the table kept in the repository
   (evcxr_releases.json, by version and platform);
2. downloads the tarball and checks it against that SHA-256;
3. starts the program in it as a Jupyter kernel, as Jupyter would, and asks it for its
   version (its kernel_info_reply: evcxr_jupyter has no `--version` option), which must be
   of the series (0.22.x);

and only then puts it in DIR (`evcxr_jupyter`, with `evcxr_jupyter.version` beside it, which
set-up reads next time). When any step fails it says why in one line and builds evcxr_jupyter
with `cargo install` instead (about 10 minutes on 2 cores). Nothing half-done is left in DIR.

Where the download comes from can be changed for a classroom mirror or a test:
MNIST_LAB_EVCXR_URL is the URL pattern (`{version}` and `{asset}` are filled in), and
MNIST_LAB_EVCXR_CHECKSUMS a table file in the same format as evcxr_releases.json. Standard
library only, except jupyter_client (with nbclient in the project's Python) for step 3.
"""

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from labkit import PACKAGE

#: The table of checksums kept in the repository.
CHECKSUMS = PACKAGE / "evcxr_releases.json"
#: The series the notebooks are tested with (xtask passes its own, the same).
SERIES = "0.22"
#: Seconds to wait for the server's answer, and for the program's kernel_info_reply.
DOWNLOAD_TIMEOUT = 60
KERNEL_TIMEOUT = 60


class Refused(Exception):
    """Why the release binary is not used (one line)."""


def target(system=None, machine=None):
    """The Rust target of evcxr's release binary for this platform, or None when evcxr
    publishes none for it."""
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    return {
        ("Linux", "x86_64"): "x86_64-unknown-linux-gnu",
        ("Linux", "amd64"): "x86_64-unknown-linux-gnu",
        ("Darwin", "arm64"): "aarch64-apple-darwin",
        ("Darwin", "aarch64"): "aarch64-apple-darwin",
        ("Windows", "amd64"): "x86_64-pc-windows-msvc",
        ("Windows", "x86_64"): "x86_64-pc-windows-msvc",
    }.get((system, machine))


def program_name(triple):
    return "evcxr_jupyter.exe" if "windows" in triple else "evcxr_jupyter"


def asset(version, triple):
    """The release's file name for `triple`: a tarball, or a zip for Windows."""
    return f"evcxr_jupyter-v{version}-{triple}" + (".zip" if "windows" in triple else ".tar.gz")


def load_table(path):
    """The checksum table at `path`: its URL pattern and {version: {triple: sha256}}."""
    try:
        table = json.loads(Path(path).read_text())
        return table["url"], table["releases"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise Refused(f"the checksum table {path} cannot be read ({error})") from None


def newest(releases, series):
    """The newest version of `series` in the table (`0.22` -> `0.22.0`), or None."""
    versions = [v for v in releases if v.startswith(series + ".")]
    return max(versions, key=lambda v: [int(p) if p.isdigit() else -1 for p in v.split(".")],
               default=None)


def fetch(url, into):
    """Downloads `url` into the open file `into`; returns its SHA-256 (hex)."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                into.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise Refused(f"could not download {url} ({reason})") from None
    return digest.hexdigest()


def unpack(archive, name, member, into):
    """Writes the archive's `member` (`evcxr_jupyter-v0.22.0-<triple>/evcxr_jupyter`) to the
    file `into`; only that one file is read, so no other path in the archive is written."""
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z, z.open(member) as source:
                shutil.copyfileobj(source, into)
        else:
            with tarfile.open(archive, "r:gz") as t:
                source = t.extractfile(member)
                if source is None:
                    raise KeyError(member)
                shutil.copyfileobj(source, into)
    except KeyError:
        raise Refused(f"{name} has no {member} in it: refused") from None
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as error:
        raise Refused(f"{name} cannot be unpacked ({error}): refused") from None


def reported_version(program, timeout=KERNEL_TIMEOUT):
    """Starts `program` as a Jupyter kernel (`PROGRAM --control_file CONNECTION_FILE`, as its
    kernelspec does) and returns the `implementation_version` of its kernel_info_reply;
    raises Refused when it does not start or answer."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory(prefix="evcxr-probe-") as scratch:
        kernels = Path(scratch) / "kernels"
        (kernels / "probe").mkdir(parents=True)
        (kernels / "probe" / "kernel.json").write_text(json.dumps({
            "argv": [str(program), "--control_file", "{connection_file}"],
            "display_name": "evcxr_jupyter probe", "language": "rust",
        }))
        manager = KernelManager(kernel_name="probe",
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
        # evcxr_jupyter updates a "rust" kernelspec it finds under JUPYTER_PATH when it starts:
        # point it at the scratch folder, which has none, so it touches nothing of the user's.
        # Its messages go to a file: the last line says why, when it does not start.
        log = Path(scratch) / "stderr"
        with open(log, "wb") as stderr:
            try:
                manager.start_kernel(env=dict(os.environ, JUPYTER_PATH=scratch), cwd=scratch,
                                     stdout=subprocess.DEVNULL, stderr=stderr)
            except OSError as error:
                raise Refused(f"the downloaded evcxr_jupyter does not run here ({error}): "
                              "refused") from None
            client = manager.client()
            try:
                client.start_channels()
                client.wait_for_ready(timeout=timeout)
                reply = client.kernel_info(reply=True, timeout=timeout)
                return str(reply["content"].get("implementation_version", ""))
            except (RuntimeError, TimeoutError) as error:  # it died, or did not answer in time
                said = log.read_text(errors="replace").strip().splitlines()
                raise Refused("the downloaded evcxr_jupyter does not run here as a kernel ("
                              + (said[-1] if said else str(error) or type(error).__name__)
                              + "): refused") from None
            finally:
                client.stop_channels()
                if manager.has_kernel:
                    manager.shutdown_kernel(now=True)


def download(dest, series=SERIES, checksums=None, url=None, triple=None):
    """Puts evcxr's release binary of `series` for `triple` (default: this platform) in the
    folder `dest`, checked as the module's docs say; returns its path and version. Raises
    Refused, saying why in one line, when it does not."""
    checksums = checksums or os.environ.get("MNIST_LAB_EVCXR_CHECKSUMS") or CHECKSUMS
    pattern, releases = load_table(checksums)
    pattern = url or os.environ.get("MNIST_LAB_EVCXR_URL") or pattern
    triple = triple or target()
    if triple is None:
        raise Refused(f"evcxr publishes no evcxr_jupyter binary for {platform.system()} "
                      f"{platform.machine()}")
    version = newest(releases, series)
    if version is None:
        raise Refused(f"no evcxr_jupyter {series}.x in the checksum table {checksums}")
    expected = str(releases[version].get(triple) or "").strip().lower()
    if not expected:
        raise Refused(f"no checksum recorded for {triple} (evcxr_jupyter {version}, {checksums})")
    name = asset(version, triple)
    source = pattern.format(version=version, asset=name)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".evcxr-download-", dir=dest))
    try:
        archive = work / name
        with open(archive, "wb") as into:
            got = fetch(source, into)
        if got != expected:
            raise Refused(f"the SHA-256 of {source} is {got}, not the {expected} recorded for "
                          f"{triple} in {checksums}: refused")
        program = work / program_name(triple)
        member = f"{Path(name).name.removesuffix('.zip').removesuffix('.tar.gz')}/{program.name}"
        with open(program, "wb") as into:
            unpack(archive, name, member, into)
        program.chmod(0o755)
        reported = reported_version(program)
        if not reported.startswith(series + "."):
            raise Refused(f"the downloaded evcxr_jupyter reports version {reported or '(none)'}, "
                          f"not the {series}.x the notebooks are tested with: refused")
        installed = dest / program.name
        os.replace(program, installed)
        (dest / "evcxr_jupyter.version").write_text(reported + "\n")
        print(f"setup: evcxr_jupyter {reported} downloaded from {source}, its SHA-256 checked, "
              f"and it runs here: {installed}", flush=True)
        return installed, reported
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cargo_install(cargo, series):
    """Builds evcxr_jupyter of `series` from source with `cargo install`; returns whether it
    succeeded."""
    command = [cargo, "install", "evcxr_jupyter", "--locked", "--version", f"~{series}"]
    try:
        return subprocess.run(command).returncode == 0
    except OSError as error:
        print(f"setup: could not run {cargo} install ({error})", file=sys.stderr)
        return False


def ensure(dest, series=SERIES, installer=None, **where):
    """The release binary (download), or else `installer()` with one line saying why. Returns
    "download" or "source" for what was done; raises Refused when the installer failed too.
    `where`: download's `checksums`, `url`, `triple` (tests)."""
    try:
        download(dest, series, **where)
        return "download"
    except Refused as why:
        print(f"setup: {why}: building evcxr_jupyter {series} from source with `cargo install` "
              "(once; about 10 minutes on 2 cores)", flush=True)
    if not installer():
        raise Refused(f"`cargo install evcxr_jupyter --version ~{series}` failed; see its output "
                      "above")
    return "source"


def main(argv):
    parser = argparse.ArgumentParser(prog="labkit evcxr", description=__doc__.split("\n")[0])
    parser.add_argument("--dest", required=True, help="the folder for the downloaded program")
    parser.add_argument("--series", default=SERIES, help=f"evcxr's series [default: {SERIES}]")
    parser.add_argument("--cargo", default="cargo", help="the cargo that builds it from source")
    args = parser.parse_args(argv)
    try:
        ensure(args.dest, args.series, installer=lambda: cargo_install(args.cargo, args.series))
    except Refused as why:
        print(f"setup: {why}", file=sys.stderr)
        return 1
    return 0
