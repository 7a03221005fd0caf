#!/usr/bin/env bash
# open3d needs libusb-1.0 at import time. Install it when missing (Debian/Ubuntu, as root
# or with sudo); otherwise say exactly what to do.
set -u
if ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then exit 0; fi
echo "xseason: the system library libusb-1.0 (needed by open3d) is missing; installing it." >&2
if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else SUDO="__none__"; fi
    fi
    if [ "$SUDO" != "__none__" ]; then
        $SUDO apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 \
            || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1; } \
            && exit 0
    fi
fi
echo "xseason: could not install libusb-1.0. Install it yourself, e.g. 'sudo apt-get install libusb-1.0-0'" >&2
echo "         (Fedora: 'sudo dnf install libusb1'; macOS: 'brew install libusb'), then rerun." >&2
exit 1
