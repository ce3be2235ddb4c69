#!/usr/bin/env bash
# The Debian/Ubuntu packages the kit needs, installed when this user may install them (root, or sudo without a
# password prompt); otherwise one line says what is missing and how to install it, and the exit status is 1.
#   scripts/system-packages.sh lab    # `make lab`: the Fashion-MNIST files, python3-venv when venv needs it
#   scripts/system-packages.sh test   # `make test`, CI: the same, plus chromium for the browser tests
# Not Debian/Ubuntu (no dpkg): says so in one line and goes on (the data then downloads on first use).
set -euo pipefail
purpose="${1:-lab}"

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "ftkit: not a Debian/Ubuntu system, skipping its packages (Fashion-MNIST downloads on first use instead)"
    exit 0
fi

pkgs=(dataset-fashion-mnist)
[ "$purpose" = test ] && pkgs+=(chromium)
python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    pkgs+=(python3 python3-venv)
elif ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    pkgs+=(python3-venv)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo)
else
    echo "ftkit: missing Debian packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]} (then run make again)" >&2
    exit 1
fi
echo "ftkit: installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q "${missing[@]}"
