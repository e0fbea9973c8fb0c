#!/usr/bin/env bash
# Installs everything Sampan needs on a Debian machine: Debian packages (when root)
# and the Python packages into a virtual environment.
set -euo pipefail
VENV="${1:-.venv}"
DEBIAN_PACKAGES=(etcd-server etcd-client runc conmon catatonit busybox-static iproute2 nftables iptables conntrack skopeo gcc libc6-dev)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $EUID -eq 0 ]]; then
        echo "installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
        # Debian starts the packaged etcd as a service; Sampan runs its own.
        if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
            systemctl disable --now etcd || true
        fi
    else
        echo "warning: not root, cannot install Debian packages: ${missing[*]}" >&2
    fi
fi

PYTHON="${PYTHON:-python3}"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/pip" install -q -c constraints.txt -e ".[test]"
echo "installed: $VENV/bin/sampan $VENV/bin/kubectl"
