//! What the promotion's default commands expect on a kubeadm node, installed on a namespace node
//! of the test ground (see [`crate::nodes`]) in its own `/usr/local/sbin` (first on its PATH):
//!
//! - `kubelet`: runs the command of every static pod manifest in `/etc/kubernetes/manifests`
//!   (etcd first), each as a child of its own; starts again a component that exits while it
//!   runs (within a second); stopped (TERM), it exits and leaves the components running, as
//!   kubelet leaves its containers to the container runtime. `kubelet --version` answers like
//!   the real one (preflight reads it).
//! - `systemctl start|stop|restart|is-active kubelet`: starts it detached, stops it (TERM, KILL
//!   after 90 s as systemd would) and waits until it is gone.
//! - `crictl ps [-q] [--name REGEX]`: the running components whose name (the manifest's file
//!   name: `etcd`, `kube-apiserver`, …) matches; a container's ID is its pid on the node.
//!   `crictl stop [--timeout N] ID...`: as containerd does it, SIGKILL at once without a timeout
//!   (crictl's default is 0), else TERM and SIGKILL after N seconds; returns once they are gone.
//!
//! `pgrep`/`pkill` (the etcd-stopped check, the force stop) see the node's own processes: each
//! node has its own PID namespace. State and logs are in [`STATE_DIR`]: `<component>.pid`,
//! `<component>.log`, `kubelet.pid`, `kubelet.log`. A test makes the container runtime
//! unreachable for `crictl` (as when containerd hangs) with [`RUNTIME_UNREACHABLE`].

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::nodes::{sh_quote, TestNode};

/// Where the stand-ins keep pids and logs, on each node.
pub const STATE_DIR: &str = "/var/lib/kubelet/standin";
/// While this file exists on a node, its `crictl` fails as when the runtime does not answer.
pub const RUNTIME_UNREACHABLE: &str = "/var/lib/kubelet/standin/runtime-unreachable";
/// The static pod manifests, on each node.
pub const MANIFESTS: &str = "/etc/kubernetes/manifests";
/// The stand-in kubelet's settings on each node: `KUBELET_IMAGE_PATH` (directories searched
/// first for a manifest's command: what an image would hold) and `KUBELET_VERSION`.
pub const KUBELET_ENV: &str = "/var/lib/kubelet/standin.env";

/// What every stand-in starts with: where the state is, and whether a pid runs (a zombie does
/// not).
const PRELUDE: &str = r#"set -u
state=/var/lib/kubelet/standin
alive() {
    [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null
}
"#;

const KUBELET: &str = r#". /var/lib/kubelet/standin.env
manifests=/etc/kubernetes/manifests
if [ "${1:-}" = --version ]; then
    echo "Kubernetes $KUBELET_VERSION"
    exit 0
fi
if [ $# -gt 0 ]; then
    echo "kubelet stand-in: takes no arguments but --version" >&2
    exit 2
fi
PATH=$KUBELET_IMAGE_PATH:$PATH
log() {
    echo "$(date -u +%H:%M:%S) $*"
}
components() {
    # etcd first, then the rest in name order.
    for f in "$manifests"/etcd.yaml "$manifests"/*.yaml; do
        [ -f "$f" ] && basename "$f" .yaml
    done | awk '!seen[$0]++'
}
mkdir -p "$state"
trap 'log "stopped; the components keep running"; exit 0' TERM INT
echo $$ >"$state/kubelet.pid"
log "started"
while :; do
    for c in $(components); do
        alive "$(cat "$state/$c.pid" 2>/dev/null)" && continue
        words=$(awk '/^ *- command:/ { on = 1; next } on && /^ *- / { sub(/^ *- /, ""); print; next } on { exit }' "$manifests/$c.yaml")
        if [ -z "$words" ]; then
            log "no command in $manifests/$c.yaml"
            continue
        fi
        set -f
        # shellcheck disable=SC2086
        $words >>"$state/$c.log" 2>&1 </dev/null &
        set +f
        echo $! >"$state/$c.pid"
        log "started $c: pid $!"
    done
    sleep 1
done
"#;

const SYSTEMCTL: &str = r#"usage() {
    echo "systemctl stand-in: start|stop|restart|is-active kubelet only (got: $*)" >&2
    exit 1
}
running() {
    alive "$(cat "$state/kubelet.pid" 2>/dev/null)"
}
start() {
    running && return 0
    mkdir -p "$state"
    rm -f "$state/kubelet.pid"
    setsid /usr/local/sbin/kubelet >>"$state/kubelet.log" 2>&1 </dev/null &
    i=0
    until running; do
        i=$((i + 1))
        if [ $i -gt 200 ]; then
            echo "kubelet did not start: see $state/kubelet.log" >&2
            exit 1
        fi
        sleep 0.05
    done
}
stop() {
    running || return 0
    pid=$(cat "$state/kubelet.pid")
    kill -TERM "$pid"
    i=0
    while alive "$pid"; do
        i=$((i + 1))
        [ $i -eq 900 ] && kill -KILL "$pid"
        sleep 0.1
    done
}
[ $# -eq 2 ] || usage "$@"
case $2 in kubelet | kubelet.service) ;; *) usage "$@" ;; esac
case $1 in
start) start ;;
stop) stop ;;
restart)
    stop
    start
    ;;
is-active)
    if running; then
        echo active
    else
        echo inactive
        exit 3
    fi
    ;;
*) usage "$@" ;;
esac
"#;

const CRICTL: &str = r#"usage() {
    echo "crictl stand-in: ps [-q] [--name REGEX] | stop [--timeout N] ID... (got: $*)" >&2
    exit 1
}
if [ -e "$state/runtime-unreachable" ]; then
    echo 'validate service connection: validate CRI v1 runtime API for endpoint "unix:///run/containerd/containerd.sock": rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial unix /run/containerd/containerd.sock: connect: connection refused"' >&2
    exit 1
fi
containers() {
    # "ID NAME" of every running component.
    for f in "$state"/*.pid; do
        [ -f "$f" ] || continue
        name=$(basename "$f" .pid)
        [ "$name" = kubelet ] && continue
        pid=$(cat "$f")
        if alive "$pid"; then echo "$pid $name"; fi
    done
}
[ $# -gt 0 ] || usage
command=$1
shift
case $command in
ps)
    quiet=
    regex=
    while [ $# -gt 0 ]; do
        case $1 in
        -q | --quiet) quiet=1 ;;
        --name) [ $# -gt 1 ] || usage ps "$@"; regex=$2; shift ;;
        --name=*) regex=${1#--name=} ;;
        *) usage ps "$@" ;;
        esac
        shift
    done
    [ -n "$quiet" ] || echo "CONTAINER NAME STATE"
    containers | while read -r id name; do
        printf '%s\n' "$name" | grep -Eq -- "$regex" || continue
        if [ -n "$quiet" ]; then echo "$id"; else echo "$id $name Running"; fi
    done
    ;;
stop)
    timeout=0
    case ${1:-} in
    -t | --timeout) [ $# -gt 1 ] || usage stop "$@"; timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#--timeout=}; shift ;;
    esac
    [ $# -gt 0 ] || usage stop
    status=0
    for id; do
        if ! containers | grep -q "^$id "; then
            echo "crictl stand-in: container \"$id\" not found" >&2
            status=1
            continue
        fi
        if [ "$timeout" -gt 0 ]; then
            kill -TERM "$id"
            i=0
            while alive "$id" && [ $i -lt $((timeout * 10)) ]; do
                sleep 0.1
                i=$((i + 1))
            done
        fi
        alive "$id" && kill -KILL "$id"
        while alive "$id"; do sleep 0.05; done
        echo "$id"
    done
    exit $status
    ;;
*) usage "$command" "$@" ;;
esac
"#;

/// Installs `kubelet`, `systemctl` and `crictl` on `node` (its `/usr/local/sbin`), the
/// kubelet finding the manifests' commands first on `image_path` and reporting `version`.
pub fn install(node: &TestNode, image_path: &[PathBuf], version: &str) {
    let bin = node.host_path("/usr/local/sbin");
    std::fs::create_dir_all(&bin).expect("node /usr/local/sbin");
    for (name, body) in [
        ("kubelet", KUBELET),
        ("systemctl", SYSTEMCTL),
        ("crictl", CRICTL),
    ] {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\n# {name} stand-in of the test ground: tests/src/node_runtime.rs\n{PRELUDE}{body}"),
        )
        .expect("write a stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod a stand-in");
    }
    let dirs: Vec<String> = image_path.iter().map(|d| d.display().to_string()).collect();
    std::fs::write(
        node.host_path(KUBELET_ENV),
        format!(
            "KUBELET_IMAGE_PATH={}\nKUBELET_VERSION={}\n",
            sh_quote(&dirs.join(":")),
            sh_quote(version)
        ),
    )
    .expect("write standin.env");
}

/// The pid on `node` of its running component `name` (`etcd`, `kube-apiserver`, `kubelet`), as
/// the stand-ins recorded it.
pub fn recorded_pid(node: &TestNode, name: &str) -> Option<u32> {
    let path = node.host_path(&format!("{STATE_DIR}/{name}.pid"));
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
