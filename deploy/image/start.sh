#!/usr/bin/env bash
# The image's entry point: gives the user a copy of the notebooks in their home the first
# time, then runs the command (JupyterLab, or the hub's jupyterhub-singleuser).
#
# On a hub the home is a persistent volume mounted over the image's /home/jovyan, so the
# notebooks cannot simply sit there in the image: they are copied on the first start and
# stay the student's from then on (a later start never overwrites them). The notebooks load
# the crate as `:dep mnist_lab = { path = "../mnist_lab" }`, so ~/mnist_lab is a symbolic
# link to the image's crate, whose build the kernel shares (evcxr resolves the link).
# The one-server hub (deploy/jupyterhub/jupyterhub_config.py) starts every server through it
# too, with MNIST_LAB_PROJECT naming the installed project.
set -euo pipefail
project="${MNIST_LAB_PROJECT:-/opt/mnist_lab}"
home="${HOME:?HOME is not set}"

if [ ! -d "$project/notebooks" ] || [ ! -f "$project/mnist_lab/Cargo.toml" ]; then
  echo "start.sh: $project holds no mnist_lab project; set MNIST_LAB_PROJECT to its folder" >&2
  exit 2
fi
if [ ! -e "$home/notebooks" ]; then
  # Copied into a temporary folder, then renamed: no half-copied notebooks after a failure.
  tmp="$(mktemp -d "$home/.notebooks.XXXXXX")"
  cp -r "$project/notebooks/." "$tmp/"
  mv "$tmp" "$home/notebooks"
fi
if [ -L "$home/mnist_lab" ] || [ ! -e "$home/mnist_lab" ]; then
  ln -sfn "$project/mnist_lab" "$home/mnist_lab"
fi
exec "$@"
