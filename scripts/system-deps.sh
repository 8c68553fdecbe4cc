#!/bin/sh
# Debian packages that tests need. As root: install the missing ones. Otherwise: name them.
set -eu
PKGS="chromium dcmtk gcc postgresql systemd"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "system-deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "system-deps: missing Debian packages:$missing"
    echo "system-deps: install them with: sudo apt-get install$missing (tests that need them will skip)"
fi
