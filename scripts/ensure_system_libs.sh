#!/usr/bin/env bash
# System packages from Debian/Ubuntu that xseason needs (installed when missing, as root or
# with sudo; otherwise says exactly what to do):
#   always:        libusb-1.0-0  (open3d loads it at import time)
#   with `test`:   chromium      (the report test renders the HTML page headless; skipped without it)
set -u
missing=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
optional=()
if [ "${1:-}" = test ] && ! command -v chromium >/dev/null 2>&1; then optional+=(chromium); fi
[ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
fi
install() {
    [ "$SUDO" = none ] && return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    echo "xseason: installing system package(s): $*" >&2
    $SUDO apt-get install -y -q "$@" >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q "$@" >/dev/null 2>&1; }
}
if [ ${#optional[@]} -gt 0 ] && ! install "${optional[@]}"; then
    echo "xseason: could not install ${optional[*]}; the tests that need it will be skipped." >&2
fi
if [ ${#missing[@]} -gt 0 ] && ! install "${missing[@]}"; then
    echo "xseason: the system library libusb-1.0 (needed by open3d) is missing and could not be installed." >&2
    echo "         Install it, e.g. 'sudo apt-get install libusb-1.0-0' (Fedora: 'sudo dnf install libusb1'," >&2
    echo "         macOS: 'brew install libusb'), then rerun." >&2
    exit 1
fi
exit 0
