#!/usr/bin/env bash
# install-deps.sh -- install what ferroswan's demo and interop tests need (Debian/Ubuntu).
# Idempotent: apt is skipped entirely when every package is already installed.
# Needs root for apt (it is skipped, with a warning, when not root and something is missing).
set -euo pipefail

PKGS=(
  strongswan-charon strongswan-swanctl strongswan-pki
  libcharon-extra-plugins libstrongswan-extra-plugins libstrongswan-standard-plugins
  iperf3 tshark tcpdump iputils-ping iproute2 gettext-base jq procps util-linux
  nftables conntrack
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all system packages present"
else
  echo "install-deps: installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: not root, cannot install; run with sudo" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # tshark pulls wireshark-common, which asks whether non-root users may capture.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# charon itself must be there (Debian path)
if [ ! -x /usr/lib/ipsec/charon ]; then
  echo "install-deps: /usr/lib/ipsec/charon missing after install" >&2
  exit 1
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    echo "install-deps: cargo found at $HOME/.cargo/bin (add it to PATH)"
  else
    echo "install-deps: cargo not found; install a Rust toolchain (https://rustup.rs)" >&2
    exit 1
  fi
else
  echo "install-deps: $(cargo --version)"
fi
