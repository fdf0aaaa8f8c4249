"""JupyterHub for a class on one server: every student is a real system user, logs in with
their system password, and gets a JupyterLab server of their own, run by systemd with a
memory limit, on the lecture's notebooks (a copy in their home) and the project's Rust
kernel, built once for everyone.

    jupyterhub -f deploy/jupyterhub/jupyterhub_config.py        (as root; README, "Teaching a class")

SystemdSpawner (PyPI: jupyterhub-systemdspawner), not LocalProcessSpawner: both run each
server as its user's own processes, but LocalProcessSpawner ignores `mem_limit` (it sets no
limit at all), while SystemdSpawner runs each server in a systemd unit whose MemoryMax is the
limit, so one student's kernel that grows cannot take the others' memory.

The project is installed once, read-only to the students, at PROJECT (an admin's clone, set
up with `deploy/image/setup.sh --image`), and the Rust toolchain at RUST (rustup's
RUSTUP_HOME and CARGO_HOME). A student's server starts through the image's entry point,
deploy/image/start.sh: the notebooks are copied into the home on the first start, and
~/mnist_lab links to the project's crate. Each kernel builds in a folder of its own under
~/.cache/mnist_lab/slots, made from the project's prebuilt build (scripts/labkit/slots.py).
"""

import os

#: The project, installed and set up by an admin (read-only to the students).
PROJECT = os.environ.get("MNIST_LAB_PROJECT", "/opt/mnist_lab")
#: The Rust toolchain every student's kernel uses: rustup's RUSTUP_HOME and CARGO_HOME, readable
#: by all (installed with RUSTUP_HOME=/opt/rust/rustup CARGO_HOME=/opt/rust/cargo).
RUST = os.environ.get("MNIST_LAB_RUST", "/opt/rust")
#: The memory each student's server may use, its kernels included (systemd's MemoryMax), from
#: the README's measurements ("Teaching a class": `labkit class` and `labkit memory`, default
#: settings): a student's Jupyter server holds 126 MB; after the whole lecture notebook once,
#: the kernel holds 2.25 GB (rust-analyzer inside evcxr_jupyter 1.42 GB of it), 2.4 GB with
#: the server; compiling a cell adds about 0.6 GB for a moment; three runs in one kernel reach
#: 3.2 GB (2.2 GB with MNIST_LAB_RELEASE_MEMORY=1, which the servers get below). 3.5 GB leaves
#: room for the compile peak over a student who runs the lecture again. A student who opens a
#: second notebook needs about 2.4 GB more.
MEMORY_LIMIT = "3.5G"
#: The cores one student's server may use at once (systemd's CPUQuota). A student needs about
#: 40 CPU-seconds from login to the first trained model, most of it the kernel's warm-up
#: (rust-analyzer) and the cells' compiles, then bursts while training; 2 cores let a lone
#: student's warm-up end in about 20 s without one student's training taking a whole server.
#: Size the server for the class: 30 students starting together need about 10 cores to reach
#: their first model within 2 minutes (README, "Teaching a class").
CPU_LIMIT = 2
#: The instructor: a system user who administers the hub (adds students, stops servers).
INSTRUCTOR = os.environ.get("MNIST_LAB_INSTRUCTOR", "instructor")

c = get_config()  # noqa: F821 (JupyterHub's config loader defines it)

c.JupyterHub.bind_url = "http://:8000"
c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"

# Real users: the system's (PAM, JupyterHub's default). Students the instructor adds on the
# hub's admin page get a system account made for them.
c.Authenticator.admin_users = {INSTRUCTOR}
c.Authenticator.allow_existing_users = True
c.LocalAuthenticator.create_system_users = True

c.Spawner.cmd = [f"{PROJECT}/deploy/image/start.sh", f"{PROJECT}/.venv/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab/tree/notebooks"
c.Spawner.mem_limit = MEMORY_LIMIT
c.Spawner.cpu_limit = CPU_LIMIT
c.Spawner.environment = {
    "MNIST_LAB_PROJECT": PROJECT,
    "MNIST_LAB_RELEASE_MEMORY": "1",
    "RUSTUP_HOME": f"{RUST}/rustup",
    "CARGO_HOME": f"{RUST}/cargo",
}
# A new kernel warms up (about 35 s measured on 2 cores) before its first cell; the server
# itself starts in seconds.
c.Spawner.start_timeout = 120

c.SystemdSpawner.extra_paths = [f"{PROJECT}/.venv/bin", f"{RUST}/cargo/bin"]
c.SystemdSpawner.user_workingdir = "/home/{USERNAME}"
c.SystemdSpawner.isolate_tmp = True
c.SystemdSpawner.disable_user_sudo = True
