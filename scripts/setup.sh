#!/usr/bin/env bash
# Installs what reef needs on a fresh Debian machine with Rust, builds reef, and installs
# reefd, reef into /usr/local/bin.
#   scripts/setup.sh            install packages, build, install binaries
#   scripts/setup.sh --deps     only the packages (what the test suite needs)
#   scripts/setup.sh --run      all of the above, then run reefd on its defaults (foreground)
set -euo pipefail
cd "$(dirname "$0")/.."

# Kernel tools reef and its tests use: iproute2 (ip), util-linux (nsenter, unshare),
# the tools the tests run inside containers (ping, dig, nc, curl, python3), etcd for the
# cluster store of overlay networks (and protoc, which its client crate builds with).
PACKAGES=(iproute2 util-linux libnftables-dev iputils-ping dnsutils netcat-openbsd curl socat nftables conntrack procps python3 kmod dnsmasq-base etcd-server etcd-client protobuf-compiler iperf3)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # No package may start a service on this machine (daemons run only inside the tests'
  # namespaces): a policy-rc.d that refuses every start, for the install only.
  policy=/usr/sbin/policy-rc.d
  had_policy=false
  [ -e "$policy" ] && had_policy=true
  if ! $had_policy; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 0755 "$policy"
  fi
  install_rc=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null || install_rc=$?
  $had_policy || $SUDO rm -f "$policy"
  [ "$install_rc" -eq 0 ] || exit "$install_rc"
fi
# The bridge netfilter sysctls (net.bridge.*) exist only with br_netfilter loaded; best
# effort, as in a container the module may be built in or unavailable.
$SUDO modprobe br_netfilter 2>/dev/null || true

[ "${1:-}" = "--deps" ] && exit 0

cargo build --release --bins
$SUDO install -m 0755 target/release/reefd target/release/reef /usr/local/bin/
echo "setup: installed /usr/local/bin/reefd and /usr/local/bin/reef"

if [ "${1:-}" = "--run" ]; then
  echo "setup: starting reefd on its defaults (API at unix:///run/reef/reef.sock); Ctrl-C stops it"
  exec $SUDO /usr/local/bin/reefd
fi
