#!/usr/bin/env bash
# The steps of the class image (deploy/image/Dockerfile runs this script), and CI's set-up step
# on a host, so that the recipe is exercised even where no image can be built:
#
#   deploy/image/setup.sh [--image] [options of `cargo xtask setup`]
#
# On a host it is exactly `cargo xtask setup`: evcxr_jupyter (evcxr's release binary where its
# checksum is recorded, else `cargo install`), rust-src, JupyterLab in .venv/, the project's
# kernel, and the kernel's warm build (Burn and mnist_lab, in .lab/evcxr/slot-0).
# With --image it then adds what only the image needs:
#   - jupyterhub in .venv/, for `jupyterhub-singleuser` (the command a hub starts);
#   - the project's kernelspec in .venv/share/jupyter/kernels, where any Jupyter started
#     from .venv finds it, and that kernel as the default for new notebooks.
set -euo pipefail
cd "$(dirname "$0")/../.."

image=false
if [ "${1:-}" = "--image" ]; then
  image=true
  shift
fi

cargo xtask setup "$@"

if "$image"; then
  # The hub's own version: Zero to JupyterHub 4.4.0 runs JupyterHub 5.5.0.
  .venv/bin/python -m pip install --quiet "jupyterhub>=5.5,<6"
  kernels=.venv/share/jupyter/kernels
  mkdir -p "$kernels"
  rm -rf "$kernels/mnist_lab"
  cp -r .lab/jupyter/kernels/mnist_lab "$kernels/mnist_lab"
  mkdir -p .venv/etc/jupyter
  cat > .venv/etc/jupyter/jupyter_server_config.json <<'JSON'
{
  "MappingKernelManager": {"default_kernel_name": "mnist_lab"}
}
JSON
  echo "setup.sh: image parts done: jupyterhub, the kernelspec in $kernels (the default kernel)"
fi
