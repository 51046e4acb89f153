#!/usr/bin/env bash
# Install everything the etcd-dr test suite needs, on Debian bookworm, as root.
#
#   scripts/install-test-deps.sh          # then: scripts/test.sh
#
# Idempotent: a second run checks what is there and skips it (a few seconds).
#
# What ends up where:
#   system (apt):   protoc (protobuf-compiler + libprotobuf-dev for the well-known .proto files), sshd (openssh-server), ssh/ssh-keygen
#                   (openssh-client), openssl, systemd-analyze (systemd), dpkg-dev, binutils, groff-base
#   $TOOLS/etcd-3.4/bin/{etcd,etcdctl}          etcd 3.4.x from Debian bookworm (unpacked, not installed)
#   $TOOLS/etcd-3.5/bin/{etcd,etcdctl,etcdutl}  etcd 3.5.x from Debian trixie (private apt lists,
#                                                the system's apt sources are not touched)
#   $TOOLS/bin/promtool                          from Debian's prometheus package (unpacked only)
#   $TOOLS/etcd-3.6/bin/{etcd,etcdctl,etcdutl}  etcd 3.6.x built from the go.etcd.io/etcd/*/v3 modules
#   $TOOLS/etcd-3.7/bin/{etcd,etcdctl,etcdutl}  etcd 3.7.x, same way
#   $TOOLS/kubernetes-1.N/bin/{kube-apiserver,kubectl,kube-controller-manager}
#                                                built from k8s.io/kubernetes through the Go module
#                                                proxy (versions pinned below, in one place)
#                   Go builds go through a build module generated in a temp dir; Go's module and
#                   build caches stay in their per-machine default places, and the finished
#                   binaries are kept per machine in $TESTGROUND_GO_BIN_CACHE (default
#                   ~/.cache/etcd-dr-testground/<name>-<version>), so a fresh clone on the same
#                   machine copies them in seconds and only a new machine builds (see
#                   tests/README.md, "Test ground": sizes, times, memory).
#   python:         moto[server] 5.2.x (+ boto3), $TOOLS/bin/moto_server -> its console script
#   $TOOLS/env.sh   exports TESTGROUND_* variables and PATH for the tests
#
# No service is started: Debian packages that ship daemons are either only unpacked (etcd,
# prometheus) or installed under a policy-rc.d that forbids starts (openssh-server).
#
# Environment:
#   TESTGROUND_TOOLS          tools dir (default: <repo>/.tools)
#   TESTGROUND_PYTHON         python interpreter used for moto (default: python3)
#   TESTGROUND_DEBIAN_MIRROR  Debian mirror URI for the trixie download (default: the one the
#                          system's apt sources use, else http://deb.debian.org/debian)
#   TESTGROUND_GO_BIN_CACHE   per-machine cache of the Go-built binaries (see above)
#   TESTGROUND_SKIP_GO_BUILDS=1  skip etcd 3.6/3.7 and Kubernetes (their tests then fail with a
#                          message naming the missing variable)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${TESTGROUND_TOOLS:-$REPO_ROOT/.tools}"
mkdir -p "$TOOLS"
TOOLS="$(cd "$TOOLS" && pwd -P)"  # physical: env.sh stays right when .tools is a symlink
PYTHON="${TESTGROUND_PYTHON:-python3}"

ETCD34_SERIES="3.4"
ETCD35_SERIES="3.5"
MOTO_SPEC='moto[server]>=5.2,<5.3'
MOTO_SERIES="5.2"
# Built from source modules through the Go module proxy. Kubernetes' minor must match the
# k8s-openapi feature in crates/restore/Cargo.toml.
ETCD36_VERSION="3.6.16"
ETCD37_VERSION="3.7.3"
KUBERNETES_VERSION="1.34.4"
KUBERNETES_SERIES="${KUBERNETES_VERSION%.*}"
GO_BIN_CACHE="${TESTGROUND_GO_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-dr-testground}"

log() { printf '[install-test-deps] %s\n' "$*"; }
die() { printf '[install-test-deps] ERROR: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    die "must run as root (apt-get install)"
fi

# One run at a time per tools dir.
exec 9>"$TOOLS/.lock"
flock 9

SCRIPT_START=$(date +%s.%N)
PHASE_NAME=""
PHASE_START=""
PHASE_REPORT=()
phase_begin() {
    PHASE_NAME="$1"
    PHASE_START=$(date +%s.%N)
    log "== $PHASE_NAME"
}
phase_end() {
    local now dur
    now=$(date +%s.%N)
    dur=$(awk -v a="$PHASE_START" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
    log "== $PHASE_NAME: ${dur}s${1:+ ($1)}"
    PHASE_REPORT+=("$(printf '%-28s %6ss  %s' "$PHASE_NAME" "$dur" "${1:-}")")
}

# Temporary files and a policy-rc.d that forbids service starts while we install.
WORK="$(mktemp -d "$TOOLS/.work.XXXXXX")"
POLICY_RC_CREATED=0
cleanup() {
    if [ "$POLICY_RC_CREATED" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

ensure_policy_rc_deny() {
    if [ -e /usr/sbin/policy-rc.d ]; then
        if ! grep -q 'exit 101' /usr/sbin/policy-rc.d; then
            log "note: existing /usr/sbin/policy-rc.d does not obviously deny starts; leaving it alone"
        fi
        return
    fi
    printf '#!/bin/sh\n# temporary, from etcd-dr scripts/install-test-deps.sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
}

# ---------------------------------------------------------------- apt helpers
APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        apt-get update -qq -o DPkg::Lock::Timeout=300
        APT_UPDATED=1
    fi
}

pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

has_candidate() {
    local c
    c="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2; exit }')"
    [ -n "$c" ] && [ "$c" != "(none)" ]
}

# Run an apt command that needs the package lists; if the lists are missing or stale
# (candidate unknown, 404 on download), update once and retry.
apt_with_lists() {
    local pkgs=("${@:2}") p need_update=0 rc=0
    local cmd="$1"
    for p in "${pkgs[@]}"; do
        has_candidate "$p" || need_update=1
    done
    if [ "$need_update" = 1 ]; then
        apt_update_once
    fi
    $cmd "${pkgs[@]}" || rc=$?
    if [ "$rc" -ne 0 ] && [ "$APT_UPDATED" = 0 ]; then
        log "apt command failed (rc=$rc); refreshing package lists and retrying"
        apt_update_once
        rc=0
        $cmd "${pkgs[@]}" || rc=$?
    fi
    return "$rc"
}

_apt_install() {
    apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 "$@"
}
_apt_download() {
    # Downloads into the current directory.
    apt-get -qq -o APT::Sandbox::User=root download "$@"
}
# apt_download_to DIR PKG...: download .debs (from the system's apt sources) into DIR.
apt_download_to() {
    local dir="$1"
    shift
    mkdir -p "$dir"
    pushd "$dir" >/dev/null
    apt_with_lists _apt_download "$@"
    popd >/dev/null
}

# Unpack every .deb in $1 into a fresh directory that atomically replaces $2.
unpack_debs() {
    local debdir="$1" dest="$2" tmp deb
    tmp="$(mktemp -d "$dest.tmp.XXXXXX")"
    for deb in "$debdir"/*.deb; do
        dpkg-deb -x "$deb" "$tmp"
    done
    rm -rf "$tmp/usr/share/doc" "$tmp/usr/share/man"
    rm -rf "$dest"
    mv "$tmp" "$dest"
}

# Link $dest/bin/NAME -> ../usr/bin/NAME for each NAME.
link_bins() {
    local dest="$1" name
    shift
    mkdir -p "$dest/bin"
    for name in "$@"; do
        [ -x "$dest/usr/bin/$name" ] || die "$dest/usr/bin/$name missing after unpack"
        ln -sfn "../usr/bin/$name" "$dest/bin/$name"
    done
}

etcd_version_of() { # prints e.g. 3.5.16, or nothing
    "$1" --version 2>/dev/null | awk '/^etcd Version:/ { print $3; exit }'
}

# ---------------------------------------------------------------- 1. system packages
phase_begin "system packages"
# libprotobuf-dev: Debian's protobuf-compiler ships no well-known-type .proto files
# (google/protobuf/descriptor.proto, struct.proto), which etcd-client's build imports;
# libprotobuf-dev puts them in /usr/include, where /usr/bin/protoc finds them by default.
# dpkg-dev (dpkg-shlibdeps), binutils (strip), groff-base: scripts/build-deb.sh and its test,
# the manual page test.
SYS_PKGS=(protobuf-compiler libprotobuf-dev openssh-server openssh-client openssl dpkg-dev binutils groff-base)
command -v systemd-analyze >/dev/null 2>&1 || SYS_PKGS+=(systemd)
MISSING=()
for p in "${SYS_PKGS[@]}"; do
    pkg_installed "$p" || MISSING+=("$p")
done
for b in /usr/include/google/protobuf/descriptor.proto /usr/bin/protoc /usr/sbin/sshd /usr/bin/ssh /usr/bin/ssh-keygen /usr/bin/openssl; do
    if [ ! -e "$b" ]; then
        case "$b" in
            */protoc) p=protobuf-compiler ;;
            */descriptor.proto) p=libprotobuf-dev ;;
            */sshd) p=openssh-server ;;
            */openssl) p=openssl ;;
            *) p=openssh-client ;;
        esac
        case " ${MISSING[*]:-} " in *" $p "*) ;; *) MISSING+=("$p") ;; esac
    fi
done
if [ "${#MISSING[@]}" -eq 0 ]; then
    phase_end "all present"
else
    log "installing: ${MISSING[*]}"
    ensure_policy_rc_deny
    sshd_before="$(pgrep -x sshd 2>/dev/null | sort || true)"
    apt_with_lists _apt_install "${MISSING[@]}"
    # Belt and braces: no sshd may have been started by the install.
    sshd_after="$(pgrep -x sshd 2>/dev/null | sort || true)"
    new_sshd="$(comm -13 <(printf '%s\n' "$sshd_before") <(printf '%s\n' "$sshd_after") | grep . || true)"
    if [ -n "$new_sshd" ]; then
        log "stopping sshd started by the package install: pids $new_sshd"
        # shellcheck disable=SC2086
        kill $new_sshd 2>/dev/null || true
    fi
    phase_end "installed ${MISSING[*]}"
fi
command -v systemd-analyze >/dev/null 2>&1 || die "systemd-analyze not found after install"

# ---------------------------------------------------------------- 2. etcd 3.4 (bookworm)
phase_begin "etcd ${ETCD34_SERIES} (bookworm)"
E34="$TOOLS/etcd-3.4"
e34_ok() {
    [ -x "$E34/bin/etcd" ] && [ -x "$E34/bin/etcdctl" ] || return 1
    case "$(etcd_version_of "$E34/bin/etcd")" in "$ETCD34_SERIES".*) return 0 ;; esac
    return 1
}
if e34_ok; then
    phase_end "present: $(etcd_version_of "$E34/bin/etcd")"
else
    apt_download_to "$WORK/e34" etcd-server etcd-client
    unpack_debs "$WORK/e34" "$E34"
    link_bins "$E34" etcd etcdctl
    (cd "$WORK/e34" && ls -1 -- *.deb) > "$E34/.debs"
    e34_ok || die "etcd in $E34 is not ${ETCD34_SERIES}.x: $(etcd_version_of "$E34/bin/etcd")"
    phase_end "unpacked $(etcd_version_of "$E34/bin/etcd")"
fi

# ---------------------------------------------------------------- 3. etcd 3.5 (trixie)
phase_begin "etcd ${ETCD35_SERIES} (trixie)"
E35="$TOOLS/etcd-3.5"
e35_ok() {
    [ -x "$E35/bin/etcd" ] && [ -x "$E35/bin/etcdctl" ] && [ -x "$E35/bin/etcdutl" ] || return 1
    case "$(etcd_version_of "$E35/bin/etcd")" in "$ETCD35_SERIES".*) ;; *) return 1 ;; esac
    local h
    h="$("$E35/bin/etcdutl" snapshot restore --help 2>&1 || true)"
    grep -q -- '--bump-revision' <<<"$h" && grep -q -- '--mark-compacted' <<<"$h"
}

debian_mirror() {
    if [ -n "${TESTGROUND_DEBIAN_MIRROR:-}" ]; then
        echo "$TESTGROUND_DEBIAN_MIRROR"
        return
    fi
    local files=() f uri
    [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    if [ "${#files[@]}" -gt 0 ]; then
        # deb822 "URIs:" lines and one-line "deb [opts] URI suite ..." entries; take the first
        # URI that looks like the main Debian archive (…/debian, not debian-security).
        uri="$(awk '
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i; next }
            /^[[:space:]]*deb[[:space:]]/ {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if (i <= NF) print $i
            }' "${files[@]}" 2>/dev/null | grep -E '^https?://[^ ]*/debian/?$' | head -n1 || true)"
        if [ -n "$uri" ]; then
            echo "${uri%/}"
            return
        fi
    fi
    echo "http://deb.debian.org/debian"
}

if e35_ok; then
    phase_end "present: $(etcd_version_of "$E35/bin/etcd")"
else
    MIRROR="$(debian_mirror)"
    APT_TRIXIE="$TOOLS/apt-trixie"
    mkdir -p "$APT_TRIXIE/lists/partial" "$APT_TRIXIE/cache/archives/partial" "$APT_TRIXIE/empty.d"
    KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$KEYRING" ] || die "$KEYRING missing (package debian-archive-keyring)"
    echo "deb [signed-by=$KEYRING target=Packages] $MIRROR trixie main" > "$APT_TRIXIE/sources.list"
    log "private apt source: $(cat "$APT_TRIXIE/sources.list")"
    TRIXIE_OPTS=(
        -o "Dir::Etc::sourcelist=$APT_TRIXIE/sources.list"
        -o "Dir::Etc::sourceparts=$APT_TRIXIE/empty.d"
        -o "Dir::State::Lists=$APT_TRIXIE/lists"
        -o "Dir::Cache=$APT_TRIXIE/cache"
        -o "Dir::Etc::preferences=/dev/null"
        -o "Dir::Etc::preferencesparts=$APT_TRIXIE/empty.d"
        -o "APT::Sandbox::User=root"
    )
    apt-get -qq "${TRIXIE_OPTS[@]}" update
    # In trixie etcdutl ships in etcd-server (etcd-client has only etcdctl); link_bins fails
    # loudly if that ever changes.
    mkdir -p "$WORK/e35"
    (cd "$WORK/e35" && apt-get -qq "${TRIXIE_OPTS[@]}" download etcd-server etcd-client)
    unpack_debs "$WORK/e35" "$E35"
    link_bins "$E35" etcd etcdctl etcdutl
    (cd "$WORK/e35" && ls -1 -- *.deb) > "$E35/.debs"
    # The private lists are only needed for this download (sources.list stays, for reference).
    rm -rf "$APT_TRIXIE/cache" "$APT_TRIXIE/lists" "$APT_TRIXIE/empty.d"
    e35_ok || die "etcd in $E35 is not ${ETCD35_SERIES}.x with etcdutl --bump-revision/--mark-compacted"
    phase_end "unpacked $(etcd_version_of "$E35/bin/etcd")"
fi

# ---------------------------------------------------------------- 4. promtool
phase_begin "promtool (prometheus deb)"
PROMTOOL="$TOOLS/bin/promtool"
if [ -x "$PROMTOOL" ] && "$PROMTOOL" --version >/dev/null 2>&1; then
    phase_end "present"
else
    mkdir -p "$TOOLS/bin"
    apt_download_to "$WORK/prom" prometheus
    dpkg-deb --fsys-tarfile "$WORK"/prom/prometheus_*.deb | tar -x -C "$WORK/prom" ./usr/bin/promtool
    install -m 755 "$WORK/prom/usr/bin/promtool" "$PROMTOOL.tmp"
    mv -f "$PROMTOOL.tmp" "$PROMTOOL"
    "$PROMTOOL" --version >/dev/null 2>&1 || die "promtool does not run"
    phase_end "unpacked"
fi

# ---------------------------------------------------------------- 5. moto
phase_begin "moto[server] (pip)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
# A Debian-managed python (PEP 668) refuses system-wide pip installs: use a venv in $TOOLS then.
if "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) and sys.prefix == sys.base_prefix else 1)' 2>/dev/null; then
    if [ ! -x "$TOOLS/venv/bin/python" ]; then
        log "$PYTHON is externally managed; creating $TOOLS/venv"
        "$PYTHON" -m venv "$TOOLS/venv"
    fi
    PYTHON="$TOOLS/venv/bin/python"
fi
moto_version() {
    "$PYTHON" - <<'EOF' 2>/dev/null || true
import importlib.metadata as md
import moto, boto3, flask, flask_cors  # the [server] extra needs flask + flask_cors
print(md.version("moto"))
EOF
}
moto_server_path() {
    "$PYTHON" - <<'EOF'
import os, site, sysconfig
cands = [sysconfig.get_path("scripts")]
try:
    cands.append(os.path.join(site.getuserbase(), "bin"))
except Exception:
    pass
for d in cands:
    p = os.path.join(d, "moto_server")
    if os.path.isfile(p) and os.access(p, os.X_OK):
        print(os.path.abspath(p))
        break
EOF
}
MV="$(moto_version)"
case "$MV" in
    "$MOTO_SERIES".*)
        MOTO_NOTE="present: moto $MV"
        ;;
    *)
        log "pip install '$MOTO_SPEC' (found: ${MV:-none})"
        "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore "$MOTO_SPEC"
        MV="$(moto_version)"
        case "$MV" in "$MOTO_SERIES".*) ;; *) die "moto $MOTO_SERIES.x not importable after pip install (got '${MV}')" ;; esac
        MOTO_NOTE="installed moto $MV"
        ;;
esac
MOTO_SERVER="$(moto_server_path)"
[ -n "$MOTO_SERVER" ] || MOTO_SERVER="$(command -v moto_server || true)"
[ -n "$MOTO_SERVER" ] || die "moto_server console script not found for $PYTHON"
mkdir -p "$TOOLS/bin"
ln -sfn "$MOTO_SERVER" "$TOOLS/bin/moto_server"
phase_end "$MOTO_NOTE"

# ---------------------------------------------------------------- 6. Go-built tools
# A build module of ours (generated in $WORK, never committed) requires the upstream modules
# at the pinned versions and `go build`s their main packages. GOTOOLCHAIN=local: never fetch
# another Go toolchain. The module and build caches are Go's per-machine defaults.
GO_ENV=(env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod)
go_timed() { # go_timed LOG CMD...: run under /usr/bin/time -v, append its report to LOG
    local log="$1"
    shift
    if [ -x /usr/bin/time ]; then
        nice -n 15 /usr/bin/time -v -a -o "$log" "$@"
    else
        nice -n 15 "$@"
    fi
}
peak_rss_mib() { # largest "Maximum resident set size" in a time -v log, in MiB
    awk -F: '/Maximum resident set size/ { v = $2 + 0; if (v > m) m = v } END { printf "%d", m / 1024 }' "$1" 2>/dev/null || echo "?"
}
# install_cached NAME VERSION DEST BIN...: copy NAME-VERSION's binaries from the per-machine
# cache into DEST/bin (atomically replacing DEST/bin). Fails if any is missing.
install_cached() {
    local name="$1" version="$2" dest="$3" b tmp
    shift 3
    for b in "$@"; do
        [ -x "$GO_BIN_CACHE/$name-$version/$b" ] || return 1
    done
    mkdir -p "$dest"
    tmp="$(mktemp -d "$dest/bin.tmp.XXXXXX")"
    chmod 755 "$tmp"
    for b in "$@"; do
        cp -l "$GO_BIN_CACHE/$name-$version/$b" "$tmp/$b" 2>/dev/null || cp "$GO_BIN_CACHE/$name-$version/$b" "$tmp/$b"
    done
    rm -rf "$dest/bin"
    mv "$tmp" "$dest/bin"
    echo "$version" > "$dest/.version"
}

etcd_go_ok() { # etcd_go_ok DIR VERSION
    local d="$1" v="$2"
    [ -x "$d/bin/etcd" ] && [ -x "$d/bin/etcdctl" ] && [ -x "$d/bin/etcdutl" ] || return 1
    [ "$(etcd_version_of "$d/bin/etcd")" = "$v" ] || return 1
    # Captured first: `grep -q` closing the pipe early fails the pipeline under pipefail.
    local out
    out="$("$d/bin/etcdutl" version 2>/dev/null || true)"
    grep -q "etcdutl version: $v" <<<"$out" || return 1
    out="$("$d/bin/etcdctl" version 2>/dev/null || true)"
    grep -q "etcdctl version: $v" <<<"$out"
}
# build_etcd VERSION DEST
build_etcd() {
    local v="$1" dest="$2" mod="$WORK/etcd-$1" out="$GO_BIN_CACHE/etcd-$1" log="$WORK/etcd-$1.time"
    if install_cached etcd "$v" "$dest" etcd etcdctl etcdutl && etcd_go_ok "$dest" "$v"; then
        GO_NOTE="copied $v from $out"
        return
    fi
    rm -rf "$out.tmp"
    mkdir -p "$mod" "$out.tmp"
    (
        cd "$mod"
        "${GO_ENV[@]}" go mod init etcd-dr.test/etcd-build >/dev/null 2>&1
        local t0=$(date +%s)
        go_timed "$log" "${GO_ENV[@]}" go get "go.etcd.io/etcd/server/v3@v$v" "go.etcd.io/etcd/etcdctl/v3@v$v" "go.etcd.io/etcd/etcdutl/v3@v$v"
        local t1=$(date +%s)
        go_timed "$log" "${GO_ENV[@]}" go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
        go_timed "$log" "${GO_ENV[@]}" go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcdctl" go.etcd.io/etcd/etcdctl/v3
        go_timed "$log" "${GO_ENV[@]}" go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcdutl" go.etcd.io/etcd/etcdutl/v3
        local t2=$(date +%s)
        echo "download $((t1 - t0))s, build $((t2 - t1))s, peak RSS $(peak_rss_mib "$log") MiB" > "$out.tmp/.build-stats"
    )
    rm -rf "$out"
    mv "$out.tmp" "$out"
    install_cached etcd "$v" "$dest" etcd etcdctl etcdutl || die "etcd $v binaries missing after build"
    etcd_go_ok "$dest" "$v" || die "etcd in $dest does not report $v"
    GO_NOTE="built $v: $(cat "$out/.build-stats")"
}

# Each is `k8s.io/kubernetes/cmd/<name>`; the per-machine cache keeps them one by one, so adding
# one here builds only that one on a machine that has the others.
KUBE_BINS=(kube-apiserver kubectl kube-controller-manager)
kube_bin_ok() { # kube_bin_ok FILE: FILE is one of KUBE_BINS and reports $KUBERNETES_VERSION
    local f="$1" out
    [ -x "$f" ] || return 1
    case "$(basename "$f")" in
        kubectl) out="$("$f" version --client 2>/dev/null || true)"
                 grep -q "Client Version: v$KUBERNETES_VERSION" <<<"$out" ;;
        *) out="$("$f" --version 2>/dev/null || true)"
           grep -qx "Kubernetes v$KUBERNETES_VERSION" <<<"$out" ;;
    esac
}
kube_ok() { # kube_ok DIR
    local d="$1" b
    for b in "${KUBE_BINS[@]}"; do
        kube_bin_ok "$d/bin/$b" || return 1
    done
}
build_kubernetes() { # build_kubernetes DEST
    local v="$KUBERNETES_VERSION" dest="$1" mod="$WORK/kubernetes-$KUBERNETES_VERSION"
    local out="$GO_BIN_CACHE/kubernetes-$KUBERNETES_VERSION" log="$WORK/kubernetes.time"
    if install_cached kubernetes "$v" "$dest" "${KUBE_BINS[@]}" && kube_ok "$dest"; then
        GO_NOTE="copied $v from $out"
        return
    fi
    # Only what the cache lacks (or holds at another version) is built; the rest is kept.
    local missing=() b
    for b in "${KUBE_BINS[@]}"; do
        kube_bin_ok "$out/$b" || missing+=("$b")
    done
    local minor="${KUBERNETES_SERIES#1.}" patch="${v##*.}"
    local staging="0.$minor.$patch"
    rm -rf "$out.tmp"
    mkdir -p "$mod" "$out.tmp"
    for b in "${KUBE_BINS[@]}"; do
        if kube_bin_ok "$out/$b"; then
            cp -l "$out/$b" "$out.tmp/$b" 2>/dev/null || cp "$out/$b" "$out.tmp/$b"
            grep "^$b:" "$out/.build-stats.per-binary" >> "$out.tmp/.build-stats.per-binary" 2>/dev/null || true
        fi
    done
    (
        cd "$mod"
        "${GO_ENV[@]}" go mod init etcd-dr.test/kubernetes-build >/dev/null 2>&1
        local t0=$(date +%s) gomod name
        gomod="$("${GO_ENV[@]}" go mod download -json "k8s.io/kubernetes@v$v" | awk -F'"' '/"GoMod":/ { print $4 }')"
        [ -f "$gomod" ] || die "go mod download k8s.io/kubernetes@v$v gave no go.mod"
        # Every staging module (replaced by ./staging/... in Kubernetes' own go.mod, which a
        # dependent module ignores) comes from its published k8s.io/<name> v0.<minor>.<patch>.
        for name in $(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$gomod"); do
            "${GO_ENV[@]}" go mod edit "-replace=$name=$name@v$staging"
        done
        local cmds=() b
        for b in "${missing[@]}"; do
            cmds+=("k8s.io/kubernetes/cmd/$b@v$v")
        done
        go_timed "$log" "${GO_ENV[@]}" go get "k8s.io/kubernetes@v$v" "${cmds[@]}"
        local t1=$(date +%s)
        local x="k8s.io/component-base/version" y="k8s.io/client-go/pkg/version"
        local ldflags="-s -w -X $x.gitVersion=v$v -X $x.gitMajor=1 -X $x.gitMinor=$minor -X $x.gitTreeState=clean"
        ldflags+=" -X $y.gitVersion=v$v -X $y.gitMajor=1 -X $y.gitMinor=$minor -X $y.gitTreeState=clean"
        for b in "${missing[@]}"; do
            local b0=$(date +%s)
            go_timed "$log" "${GO_ENV[@]}" go build -trimpath -ldflags "$ldflags" -o "$out.tmp/$b" "k8s.io/kubernetes/cmd/$b"
            echo "$b: $(( $(date +%s) - b0 ))s" >> "$out.tmp/.build-stats.per-binary"
        done
        local t2=$(date +%s)
        echo "${missing[*]}: download $((t1 - t0))s ($(du -sh "$("${GO_ENV[@]}" go env GOMODCACHE)" | cut -f1) module cache), build $((t2 - t1))s, peak RSS $(peak_rss_mib "$log") MiB" > "$out.tmp/.build-stats"
    )
    rm -rf "$out"
    mv "$out.tmp" "$out"
    install_cached kubernetes "$v" "$dest" "${KUBE_BINS[@]}" || die "Kubernetes $v binaries missing after build"
    kube_ok "$dest" || die "${KUBE_BINS[*]} in $dest do not all report v$v"
    GO_NOTE="built $v: $(cat "$out/.build-stats")"
}

E36="$TOOLS/etcd-3.6"
E37="$TOOLS/etcd-3.7"
KUBE="$TOOLS/kubernetes-$KUBERNETES_SERIES"
if [ "${TESTGROUND_SKIP_GO_BUILDS:-0}" = 1 ]; then
    log "TESTGROUND_SKIP_GO_BUILDS=1: not building etcd 3.6/3.7 and Kubernetes"
else
    command -v go >/dev/null 2>&1 || die "go not found (etcd 3.6/3.7 and Kubernetes are built from the Go module proxy; Go 1.24+ needed)"
    for spec in "3.6 $ETCD36_VERSION $E36" "3.7 $ETCD37_VERSION $E37"; do
        read -r series v dest <<<"$spec"
        phase_begin "etcd $series (go build)"
        if etcd_go_ok "$dest" "$v"; then
            phase_end "present: $v"
        else
            GO_NOTE=""
            build_etcd "$v" "$dest"
            phase_end "$GO_NOTE"
        fi
    done
    phase_begin "kubernetes $KUBERNETES_SERIES (go build)"
    if kube_ok "$KUBE"; then
        phase_end "present: $KUBERNETES_VERSION"
    else
        GO_NOTE=""
        build_kubernetes "$KUBE"
        phase_end "$GO_NOTE"
    fi
fi

# ---------------------------------------------------------------- 7. env.sh + summary
phase_begin "env.sh + summary"
SSHD=/usr/sbin/sshd
[ -x "$SSHD" ] || die "$SSHD missing"
ENV_SH="$TOOLS/env.sh"
cat > "$ENV_SH.tmp" <<EOF
# Generated by scripts/install-test-deps.sh; source it before running the tests.
export TESTGROUND_TOOLS='$TOOLS'
export TESTGROUND_ETCD35_BIN_DIR='$E35/bin'
export TESTGROUND_ETCD34_BIN_DIR='$E34/bin'
export TESTGROUND_MOTO_SERVER='$MOTO_SERVER'
export TESTGROUND_PROMTOOL='$PROMTOOL'
EOF
if [ "${TESTGROUND_SKIP_GO_BUILDS:-0}" != 1 ]; then
    cat >> "$ENV_SH.tmp" <<EOF
export TESTGROUND_ETCD36_BIN_DIR='$E36/bin'
export TESTGROUND_ETCD37_BIN_DIR='$E37/bin'
export TESTGROUND_KUBE_BIN_DIR='$KUBE/bin'
export TESTGROUND_KUBE_VERSION='$KUBERNETES_VERSION'
EOF
fi
cat >> "$ENV_SH.tmp" <<EOF
export TESTGROUND_SSHD='$SSHD'
export TESTGROUND_SSH='$(command -v ssh)'
export TESTGROUND_SSH_KEYGEN='$(command -v ssh-keygen)'
export TESTGROUND_SYSTEMD_ANALYZE='$(command -v systemd-analyze)'
export PROTOC='$(command -v protoc)'
export PROTOC_INCLUDE='/usr/include'
case ":\$PATH:" in
    *":$TOOLS/bin:"*) ;;
    *) export PATH='$TOOLS/bin:$E35/bin':"\$PATH" ;;
esac
EOF
mv -f "$ENV_SH.tmp" "$ENV_SH"

first_line() { "$@" 2>&1 | head -n1; }
SUMMARY=(
    "etcd 3.5:        $(etcd_version_of "$E35/bin/etcd") (etcdctl $("$E35/bin/etcdctl" version | awk '/etcdctl version/ {print $3}'), etcdutl $("$E35/bin/etcdutl" version | awk '/etcdutl version/ {print $3}')) [$(tr '\n' ' ' < "$E35/.debs" 2>/dev/null || true)]"
    "etcd 3.4:        $(etcd_version_of "$E34/bin/etcd") (etcdctl $("$E34/bin/etcdctl" version | awk '/etcdctl version/ {print $3}')) [$(tr '\n' ' ' < "$E34/.debs" 2>/dev/null || true)]"
    "promtool:        $(first_line "$PROMTOOL" --version)"
)
if [ "${TESTGROUND_SKIP_GO_BUILDS:-0}" != 1 ]; then
    SUMMARY+=(
        "etcd 3.6:        $(etcd_version_of "$E36/bin/etcd") (go build, $E36/bin)"
        "etcd 3.7:        $(etcd_version_of "$E37/bin/etcd") (go build, $E37/bin)"
        "kubernetes:      $(first_line "$KUBE/bin/kube-apiserver" --version) (${KUBE_BINS[*]} in $KUBE/bin)"
    )
fi
SUMMARY+=(
    "moto:            $MV ($MOTO_SERVER), boto3 $("$PYTHON" -c 'import boto3; print(boto3.__version__)')"
    "protoc:          $(first_line protoc --version)"
    "sshd:            $(first_line "$SSHD" -V)"
    "ssh:             $(first_line ssh -V)"
    "openssl:         $(first_line openssl version)"
    "systemd-analyze: $(first_line systemd-analyze --version)"
)
phase_end
TOTAL=$(awk -v a="$SCRIPT_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

echo
echo "==== etcd-dr test dependencies (tools dir: $TOOLS) ===="
printf '  %s\n' "${SUMMARY[@]}"
echo "---- timings"
printf '  %s\n' "${PHASE_REPORT[@]}"
echo "  total: ${TOTAL}s"
echo "---- env: source $ENV_SH"
