#!/usr/bin/env bash
# Usage: scripts/link-torch.sh VENV
# Makes the shared torch environment importable in VENV (a .pth file naming its site-packages),
# so pip there counts torch==2.14.1 and torchvision==0.29.1 as installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
torch_site=$("$here/torch-env.sh")
venv_site=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$torch_site" > "$venv_site/_esq_shared_torch.pth"
