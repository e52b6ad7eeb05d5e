#!/bin/sh
# Install or upgrade efm-gateway on a Debian 12 or Ubuntu 24.04 server, as root, from this source tree:
#
#   sudo packaging/install.sh                                   # the package from this checkout (pip builds it)
#   sudo packaging/install.sh --package efm_gateway-X-py3-none-any.whl     # or a wheel, or "efm-gateway==X"
#
# It makes the system user efm-gateway, a virtual environment in /opt/efm-gateway with the package in it (the
# distributions refuse a global pip install: PEP 668), the systemd units, /etc/efm-gateway with a config
# template, /var/lib/efm-gateway, and /etc/credstore for the secrets. Run it again to upgrade: the program and
# the units are replaced; config.yaml, the secrets and the state are kept. Offline, give pip a folder of
# wheels: PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels packaging/install.sh --package efm-gateway
set -eu

usage() {
	cat <<'EOF'
usage: install.sh [--package SPEC] [--prefix DIR] [--root DIR] [--python PYTHON] [--system-site-packages]

  --package SPEC           what pip installs: a wheel, a source folder, or a requirement such as
                           "efm-gateway==1.2.0" (default: the source tree this script is in)
  --prefix DIR             the virtual environment (default: /opt/efm-gateway); the units run DIR/bin/efm-gateway
  --root DIR               install the user, units and /etc files into DIR instead of / (an image being built,
                           or a test); systemctl is then left alone
  --python PYTHON          the Python (3.11 or newer) that makes the environment (default: python3)
  --system-site-packages   let the environment use packages the system's Python already has, where they
                           are new enough, instead of downloading them
EOF
}

fail() {
	echo "install.sh: $*" >&2
	exit 1
}

source_tree=$(cd "$(dirname "$0")/.." && pwd)
package=$source_tree
prefix=/opt/efm-gateway
root=/
python=python3
venv_options=

while [ $# -gt 0 ]; do
	case $1 in
	--package | --prefix | --root | --python)
		[ $# -ge 2 ] || { usage >&2; exit 2; }
		case $1 in
		--package) package=$2 ;;
		--prefix) prefix=$2 ;;
		--root) root=$2 ;;
		--python) python=$2 ;;
		esac
		shift 2
		;;
	--system-site-packages) venv_options=--system-site-packages; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

case $prefix in /*) ;; *) fail "--prefix must be an absolute path, not $prefix" ;; esac
case $root in /*) ;; *) fail "--root must be an absolute path, not $root" ;; esac
root=${root%/}
[ "$(id -u)" -eq 0 ] || fail "run it as root (sudo $0): it creates a system user and installs systemd units"
for tool in systemd-sysusers systemd-tmpfiles; do
	command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing; install systemd"
done
command -v "$python" >/dev/null 2>&1 || fail "$python is missing: apt-get install python3 python3-venv"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
	fail "efm-gateway needs Python 3.11 or newer; $python is $("$python" -c 'import sys; print(sys.version.split()[0])')"
"$python" -c 'import ensurepip, venv' 2>/dev/null ||
	fail "$python cannot make a virtual environment: apt-get install python3-venv"

# The user and the folders, from the same snippets systemd/README.md installs by hand.
mkdir -p "$root/etc/sysusers.d" "$root/etc/tmpfiles.d" "$root/etc/systemd/system" "$root/usr/local/bin"
install -m 0644 "$source_tree/systemd/sysusers.d/efm-gateway.conf" "$root/etc/sysusers.d/efm-gateway.conf"
install -m 0644 "$source_tree/systemd/tmpfiles.d/efm-gateway.conf" "$root/etc/tmpfiles.d/efm-gateway.conf"
systemd-sysusers --root="$root/" "$root/etc/sysusers.d/efm-gateway.conf"
systemd-tmpfiles --root="$root/" --create "$root/etc/tmpfiles.d/efm-gateway.conf"
# Secrets for LoadCredential=: root's alone (newer systemd versions make the folder themselves).
[ -d "$root/etc/credstore" ] || install -d -m 0700 "$root/etc/credstore"

# The program, in its own environment; an environment whose Python is gone (a distribution upgrade) is made anew.
if [ -x "$prefix/bin/python" ] && "$prefix/bin/python" -c '' 2>/dev/null; then
	echo "install.sh: upgrading the environment $prefix"
else
	echo "install.sh: making the environment $prefix"
	# shellcheck disable=SC2086 # venv_options is empty or one word
	"$python" -m venv --clear $venv_options "$prefix"
fi
"$prefix/bin/python" -m pip install --quiet --upgrade "$package"
installed=$("$prefix/bin/efm-gateway" --version) || fail "$prefix/bin/efm-gateway does not run"

# The units run the program from the environment; replaced on every upgrade (local changes belong in
# drop-ins: systemctl edit efm-gateway).
for unit in efm-gateway.service efm-gateway@.service; do
	sed "s#/opt/efm-gateway/bin/#$prefix/bin/#g" "$source_tree/systemd/$unit" >"$root/etc/systemd/system/$unit.new"
	chmod 0644 "$root/etc/systemd/system/$unit.new"
	mv "$root/etc/systemd/system/$unit.new" "$root/etc/systemd/system/$unit"
done
ln -sfn "$prefix/bin/efm-gateway" "$root/usr/local/bin/efm-gateway"

# The configuration: a template the first time, never overwritten; the newest template beside it always.
group_id=$(awk -F: '$1 == "efm-gateway" { print $3 }' "$root/etc/group")
[ -n "$group_id" ] || fail "the group efm-gateway is missing from $root/etc/group"
install -m 0640 -o 0 -g "$group_id" "$source_tree/packaging/config.yaml" "$root/etc/efm-gateway/config.yaml.example"
if [ -e "$root/etc/efm-gateway/config.yaml" ]; then
	echo "install.sh: kept $root/etc/efm-gateway/config.yaml (the newest template is config.yaml.example beside it)"
else
	install -m 0640 -o 0 -g "$group_id" "$source_tree/packaging/config.yaml" "$root/etc/efm-gateway/config.yaml"
	echo "install.sh: wrote the template $root/etc/efm-gateway/config.yaml: set organisation.orgnr, then the rest"
fi

if [ "$root" = "" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if systemctl is-active --quiet efm-gateway; then
		echo "install.sh: efm-gateway runs the version before; check, then restart it:"
		echo "  efm-gateway check-config && systemctl restart efm-gateway"
	fi
fi
echo "install.sh: installed $installed in $prefix"
