#!/usr/bin/env bash
# Install the Debian packages kws-okd uses, only if something is missing.
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v flite >/dev/null || need+=(flite)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || need+=(libportaudio2)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
