#!/usr/bin/env bash
# Creates (once) the shared torch environment that every other environment of this repo links to
# through a .pth file, so torch is installed once per clone, not once per venv or nox session.
# Prints the site-packages folder to link to.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
torch_env="$root/.venv-torch"
stamp="$torch_env/.esq-torch-2.14.1-torchvision-0.29.1"
if [ ! -f "$stamp" ]; then
  echo "esq: installing torch 2.14.1 and torchvision 0.29.1 into $torch_env (once)" >&2
  python3.11 -m venv --clear "$torch_env"
  "$torch_env/bin/pip" install --quiet --disable-pip-version-check \
    torch==2.14.1 torchvision==0.29.1 2> >(grep -v "is ignored: it is neither" >&2)
  "$torch_env/bin/python" -c 'import torch, torchvision' >&2
  touch "$stamp"
fi
"$torch_env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
