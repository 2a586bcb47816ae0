#!/usr/bin/env bash
# Creates or updates .venv: every package under packages/ installed editable (with its extras), plus the tools
# (nox, pytest, ruff from tools.txt). Reinstalls only when one of those files changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=.venv
stamp="$venv/.esq-installed"
wanted=$(cat scripts/dev-env.sh tools.txt packages/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
[ -x "$venv/bin/python" ] || python3.11 -m venv "$venv"
scripts/link-torch.sh "$venv"
packages=()
for package in packages/*/; do
  # with every extra the package declares (esq-backbones[lpips,sd-vae]), as the nox sessions do
  extras=$(python3.11 -c 'import sys, tomllib
extras = sorted(tomllib.load(open(sys.argv[1], "rb"))["project"].get("optional-dependencies", {}))
print("[" + ",".join(extras) + "]" if extras else "")' "${package}pyproject.toml")
  packages+=(-e "${package%/}$extras")
done
echo "esq: installing ${packages[*]} into $venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "${packages[@]}" \
  -r tools.txt 2> >(grep -v "is ignored: it is neither" >&2)
"$venv/bin/esq" --version >/dev/null
echo "$wanted" > "$stamp"
