#!/usr/bin/env bash
# Build the Debian package of etcd-dr (bookworm and later) with dpkg-deb.
#
#   scripts/build-deb.sh                      # release build, then target/debian/etcd-dr_<version>_<arch>.deb
#   scripts/build-deb.sh --binary PATH        # package this binary instead of building (tests: the dev build)
#   scripts/build-deb.sh --out DIR --compression none|gzip|xz
#
# What it installs (docs/install.md):
#   /usr/bin/etcd-dr                                   the binary (stripped copy)
#   /lib/systemd/system/etcd-dr.service                deploy/systemd/etcd-dr.service (not enabled)
#   /usr/lib/sysusers.d/etcd-dr.conf                   the system user etcd-dr (postinst: systemd-sysusers)
#   /usr/lib/tmpfiles.d/etcd-dr.conf                   /etc/etcd-dr 0750 root:etcd-dr, /var/lib/etcd-dr 0700 etcd-dr
#   /usr/share/doc/etcd-dr/examples/                   config/*.toml, deploy/systemd/etcd-dr.env.example
#   /usr/share/man/man1/etcd-dr*.1.gz                  `etcd-dr man --dir`
#   bash, zsh and fish completions                     `etcd-dr completions <shell>`
# Maintainer scripts: deploy/debian/{postinst,prerm,postrm}.
#
# dpkg-deb rather than cargo-deb: dpkg-deb and dpkg-shlibdeps come with Debian, while cargo-deb
# would be compiled from source on every fresh machine (minutes on two cores) only to copy the
# same files; the whole layout stays readable here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=""
OUT="$PWD/target/debian"
COMPRESSION="xz"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) BIN="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --compression) COMPRESSION="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-deb.sh: unknown argument \`$1\` (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$BIN" ]; then
    cargo build --release --locked -p etcd-dr
    BIN="$PWD/target/release/etcd-dr"
fi
[ -x "$BIN" ] || { echo "build-deb.sh: \`$BIN\` is not an executable" >&2; exit 2; }

VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
[ -n "$VERSION" ] || { echo "build-deb.sh: no version in Cargo.toml [workspace.package]" >&2; exit 1; }
ARCH="$(dpkg --print-architecture)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/etcd-dr"
DOC="$ROOT/usr/share/doc/etcd-dr"
install -d -m 0755 "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/lib/systemd/system" \
    "$ROOT/usr/lib/sysusers.d" "$ROOT/usr/lib/tmpfiles.d" "$DOC/examples" \
    "$ROOT/usr/share/man/man1" "$ROOT/usr/share/bash-completion/completions" \
    "$ROOT/usr/share/zsh/vendor-completions" "$ROOT/usr/share/fish/vendor_completions.d"

install -m 0755 "$BIN" "$ROOT/usr/bin/etcd-dr"
strip --strip-unneeded "$ROOT/usr/bin/etcd-dr"
install -m 0644 deploy/systemd/etcd-dr.service "$ROOT/lib/systemd/system/etcd-dr.service"
install -m 0644 deploy/debian/etcd-dr.sysusers "$ROOT/usr/lib/sysusers.d/etcd-dr.conf"
install -m 0644 deploy/debian/etcd-dr.tmpfiles "$ROOT/usr/lib/tmpfiles.d/etcd-dr.conf"
install -m 0644 config/primary.toml config/secondary.toml deploy/systemd/etcd-dr.env.example "$DOC/examples/"
cat >"$DOC/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: etcd-dr

Files: *
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$DOC/copyright"

# Pages and completions come from the binary's own CLI definition.
"$ROOT/usr/bin/etcd-dr" man --dir "$ROOT/usr/share/man/man1"
gzip -9n "$ROOT"/usr/share/man/man1/*.1
"$ROOT/usr/bin/etcd-dr" completions bash >"$ROOT/usr/share/bash-completion/completions/etcd-dr"
"$ROOT/usr/bin/etcd-dr" completions zsh >"$ROOT/usr/share/zsh/vendor-completions/_etcd-dr"
"$ROOT/usr/bin/etcd-dr" completions fish >"$ROOT/usr/share/fish/vendor_completions.d/etcd-dr.fish"
find "$ROOT/usr/share" -type f -exec chmod 0644 {} +

install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$ROOT/DEBIAN/"

# The shared libraries the binary links (libc6, libgcc-s1 …) with their minimum versions.
mkdir -p "$WORK/debian"
printf 'Source: etcd-dr\n\nPackage: etcd-dr\nArchitecture: any\n' >"$WORK/debian/control"
SHLIBS="$(cd "$WORK" && dpkg-shlibdeps -O "$ROOT/usr/bin/etcd-dr" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')"
[ -n "$SHLIBS" ] || { echo "build-deb.sh: dpkg-shlibdeps found no library dependencies" >&2; exit 1; }

cat >"$ROOT/DEBIAN/control" <<EOF
Package: etcd-dr
Version: $VERSION
Architecture: $ARCH
Maintainer: etcd-dr maintainers <etcd-dr@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
Depends: $SHLIBS, systemd
Recommends: openssh-client
Section: admin
Priority: optional
Description: keeps a Kubernetes control plane recoverable in a second region
 etcd-dr streams etcd snapshots (zstd, optionally age-encrypted) to object
 storage (a local directory, S3, OCI) on a schedule; a secondary daemon in the
 other region verifies and pre-stages each one and reports the replication lag
 to Prometheus; promote restores the newest snapshot onto the secondary's
 control-plane nodes over ssh.
EOF

mkdir -p "$OUT"
DEB="$OUT/etcd-dr_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Z"$COMPRESSION" --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
