#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for this project: the system libraries that
# pyrealsense2 and Open3D need (apt-get, as root or through sudo) and a Python virtual
# environment in .venv with requirements.txt. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(
  libusb-1.0-0          # pyrealsense2 and Open3D link against libusb
  libgomp1              # OpenMP runtime of torch, Open3D and ONNX Runtime
  libgl1 libegl1        # Open3D's window and its EGL/GL paths
  libvulkan1 mesa-vulkan-drivers  # Open3D's offscreen (Filament) renderer on the CPU
  xvfb                  # a virtual display for the viewer in CI
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -r requirements.txt
echo "setup done: $(.venv/bin/python --version), packages from requirements.txt in .venv"
