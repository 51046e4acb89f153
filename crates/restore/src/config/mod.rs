//! `[promote]`: how the secondary's control plane is restored. `[promote.kubernetes]` and
//! `[promote.after]` live in `kubernetes.rs`, `[promote.replay]` in `replay.rs`; hooks and the
//! front end keep their sections beside their code (`hooks.rs`, `front_end.rs`).

use std::path::PathBuf;
use std::time::Duration;

use etcd_dr_cluster_shape::ShapeChecks;
use etcd_dr_core::ConfigProblems;
use etcd_dr_scheduler::EtcdConfig;
use serde::Deserialize;

mod kubernetes;
mod replay;

pub use kubernetes::{AfterConfig, KubernetesConfig, PodSelector};
pub use replay::{ReplayConfig, ReplayEngineName};

use crate::front_end::FrontEndConfig;
use crate::hooks::{validate_hooks, HookConfig};

/// `[promote]`: how the secondary's control plane is restored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteConfig {
    /// The secondary's own etcd client URLs (and TLS material): its revision is read before the
    /// restore and its health checked after.
    pub etcd: EtcdConfig,
    /// The etcd static pod manifest on every control-plane node.
    #[serde(default = "default_etcd_manifest")]
    pub etcd_manifest: String,
    /// The etcd data dir on the nodes; read from the manifest's `etcd-data` hostPath when unset.
    #[serde(default)]
    pub data_dir: Option<String>,
    /// The nodes' Kubernetes directory (kept aside before anything changes).
    #[serde(default = "default_kubernetes_dir")]
    pub kubernetes_dir: String,
    /// `etcdutl` on the nodes (etcd 3.5+ snapshots).
    #[serde(default = "default_etcdutl")]
    pub etcdutl: String,
    /// `etcdctl` on the nodes (etcd 3.4 snapshots: `etcdctl snapshot restore`).
    #[serde(default = "default_etcdctl")]
    pub etcdctl: String,
    /// Added to the highest revision either side has seen (`--bump-revision`); etcd's docs
    /// recommend a billion.
    #[serde(default = "default_bump_margin")]
    pub revision_bump_margin: u64,
    /// Free space the data dir's file system needs, as a multiple of the plain snapshot size
    /// (the copied snapshot plus the restored database).
    #[serde(default = "default_free_space_factor")]
    pub free_space_factor: u64,
    /// Install the primary's `sa.key`/`sa.pub` from the snapshot's node bundle (a snapshot
    /// without them fails the preflight unless this is false).
    #[serde(default = "default_true")]
    pub require_service_account_keys: bool,
    /// Commands (argv lists) that stop the control plane on a node, in order.
    #[serde(default = "default_stop_commands")]
    pub stop_control_plane: Vec<Vec<String>>,
    /// A command that succeeds once etcd is down on the node; polled after the stop commands.
    #[serde(default = "default_etcd_stopped")]
    pub etcd_stopped_check: Vec<String>,
    /// Commands (argv lists) that start the control plane on a node, in order.
    #[serde(default = "default_start_commands")]
    pub start_control_plane: Vec<Vec<String>>,
    /// How long etcd may take to go down after the stop commands.
    #[serde(default = "default_stop_timeout", with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// Run on a node whose etcd still runs `stop_timeout` after the stop commands; it must
    /// succeed only when the control plane is gone. The default SIGKILLs whatever is left of
    /// etcd, kube-apiserver, kube-controller-manager and kube-scheduler and checks that all four
    /// are gone. Empty: no force stop, the promotion fails there.
    #[serde(default = "default_force_stop")]
    pub force_stop_command: Vec<String>,
    /// How long the restored cluster may take to become healthy.
    #[serde(default = "default_health_timeout", with = "humantime_serde")]
    pub health_timeout: Duration,
    /// How long a switchover waits for the primary's final snapshot.
    #[serde(default = "default_switchover_timeout", with = "humantime_serde")]
    pub switchover_timeout: Duration,
    /// Local directory for the downloaded snapshot (when no pre-staged copy matches).
    #[serde(default = "default_work_dir")]
    pub work_dir: PathBuf,
    /// The secondary's Kubernetes API, for `/readyz` and the after-steps.
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
    /// What runs once the restored control plane is healthy.
    #[serde(default)]
    pub after: AfterConfig,
    /// How preflight judges each difference between the snapshot's cluster and the secondary
    /// (`error`, `warn`, `off`).
    #[serde(default)]
    pub shape_checks: ShapeChecks,
    /// kubeadm's kubelet flags on every node (the container runtime endpoint), read by
    /// preflight.
    #[serde(default = "default_kubeadm_flags_file")]
    pub kubeadm_flags_file: String,
    /// The built-in step that points the API front-end name at the secondary on every node.
    #[serde(default)]
    pub front_end: FrontEndConfig,
    /// Commands run before and after the restore (`[[promote.hooks]]`), in order.
    #[serde(default)]
    pub hooks: Vec<HookConfig>,
    /// How a restore to a point (`at`) replays: the engine and, for `etcd`, its binaries.
    #[serde(default)]
    pub replay: ReplayConfig,
}

fn default_kubeadm_flags_file() -> String {
    "/var/lib/kubelet/kubeadm-flags.env".into()
}
fn default_etcd_manifest() -> String {
    "/etc/kubernetes/manifests/etcd.yaml".into()
}
fn default_kubernetes_dir() -> String {
    "/etc/kubernetes".into()
}
fn default_etcdutl() -> String {
    "etcdutl".into()
}
fn default_etcdctl() -> String {
    "etcdctl".into()
}
fn default_bump_margin() -> u64 {
    1_000_000_000
}
fn default_free_space_factor() -> u64 {
    2
}
pub(super) fn default_true() -> bool {
    true
}
pub(super) fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}
/// kubeadm: kubelet runs the static pods; without it they keep running until their containers
/// are stopped. `crictl stop` without a timeout SIGKILLs at once (containerd's CRI); with
/// `--timeout 10` etcd gets SIGTERM and ten seconds to shut down cleanly first.
fn default_stop_commands() -> Vec<Vec<String>> {
    vec![
        words(&["systemctl", "stop", "kubelet"]),
        words(&[
            "sh",
            "-c",
            "for name in etcd kube-apiserver kube-controller-manager kube-scheduler; do \
             ids=$(crictl ps -q --name \"^$name\\$\"); \
             if [ -n \"$ids\" ]; then crictl stop --timeout 10 $ids >/dev/null; fi; done",
        ]),
    ]
}
fn default_etcd_stopped() -> Vec<String> {
    words(&["sh", "-c", "! pgrep -x etcd >/dev/null"])
}
/// The control-plane processes a force stop kills.
pub const CONTROL_PLANE_PROCESSES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
fn default_force_stop() -> Vec<String> {
    words(&["sh", "-c", &force_stop_script(&CONTROL_PLANE_PROCESSES)])
}
/// SIGKILLs every process named `names`, then waits up to 5 s for all of them to be gone;
/// fails naming those that are not. Processes are matched by the name the kernel keeps for
/// them (`pgrep -x`), which is cut to 15 bytes: `kube-controller-manager` runs as
/// `kube-controller`, and the full name would match nothing.
pub(crate) fn force_stop_script(names: &[&str]) -> String {
    let names = names.join(" ");
    format!(
        "for name in {names}; do pkill -KILL -x \"$(printf %.15s \"$name\")\"; done; \
         for i in 1 2 3 4 5 6 7 8 9 10; do left=''; \
         for name in {names}; do pgrep -x \"$(printf %.15s \"$name\")\" >/dev/null && left=\"$left $name\"; done; \
         [ -z \"$left\" ] && exit 0; sleep 0.5; done; \
         echo \"still running after SIGKILL:$left\" >&2; exit 1"
    )
}
fn default_start_commands() -> Vec<Vec<String>> {
    vec![words(&["systemctl", "start", "kubelet"])]
}
fn default_stop_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_switchover_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_work_dir() -> PathBuf {
    PathBuf::from("/var/lib/etcd-dr/promote")
}

impl PromoteConfig {
    /// Defaults for everything but the secondary's etcd endpoints.
    pub fn new(etcd: EtcdConfig) -> Self {
        Self {
            etcd,
            etcd_manifest: default_etcd_manifest(),
            data_dir: None,
            kubernetes_dir: default_kubernetes_dir(),
            etcdutl: default_etcdutl(),
            etcdctl: default_etcdctl(),
            revision_bump_margin: default_bump_margin(),
            free_space_factor: default_free_space_factor(),
            require_service_account_keys: true,
            stop_control_plane: default_stop_commands(),
            etcd_stopped_check: default_etcd_stopped(),
            start_control_plane: default_start_commands(),
            stop_timeout: default_stop_timeout(),
            force_stop_command: default_force_stop(),
            health_timeout: default_health_timeout(),
            switchover_timeout: default_switchover_timeout(),
            work_dir: default_work_dir(),
            kubernetes: None,
            after: AfterConfig::default(),
            shape_checks: ShapeChecks::default(),
            kubeadm_flags_file: default_kubeadm_flags_file(),
            front_end: FrontEndConfig::default(),
            hooks: Vec::new(),
            replay: ReplayConfig::default(),
        }
    }

    /// Reports every bad field under `field` (e.g. `promote`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        self.etcd.validate(&format!("{field}.etcd"), problems);
        let absolute = |problems: &mut ConfigProblems, name: &str, value: &str| {
            if !value.starts_with('/') || value.len() < 2 {
                problems.push(
                    format!("{field}.{name}"),
                    "must be an absolute path other than /",
                );
            }
        };
        absolute(problems, "etcd_manifest", &self.etcd_manifest);
        absolute(problems, "kubernetes_dir", &self.kubernetes_dir);
        absolute(problems, "kubeadm_flags_file", &self.kubeadm_flags_file);
        self.front_end
            .validate(&format!("{field}.front_end"), problems);
        validate_hooks(&self.hooks, &format!("{field}.hooks"), problems);
        if let Some(dir) = &self.data_dir {
            absolute(problems, "data_dir", dir);
        }
        for (name, value) in [
            ("etcdutl", self.etcdutl.as_str()),
            ("etcdctl", self.etcdctl.as_str()),
            ("replay.etcd", self.replay.etcd.to_str().unwrap_or("-")),
            (
                "replay.etcdutl",
                self.replay.etcdutl.to_str().unwrap_or("-"),
            ),
        ] {
            if value.is_empty() || value.starts_with('-') {
                problems.push(format!("{field}.{name}"), "must be a program name or path");
            }
        }
        if self.revision_bump_margin == 0 {
            problems.push(
                format!("{field}.revision_bump_margin"),
                "must be above 0; etcd recommends 1000000000",
            );
        }
        if self.free_space_factor == 0 {
            problems.push(format!("{field}.free_space_factor"), "must be at least 1");
        }
        let argv = |problems: &mut ConfigProblems, name: String, words: &[String]| {
            if words.is_empty() || words.iter().any(String::is_empty) {
                problems.push(name, "must be a non-empty list of words, e.g. [\"systemctl\", \"stop\", \"kubelet\"]");
            }
        };
        for (i, command) in self.stop_control_plane.iter().enumerate() {
            argv(
                problems,
                format!("{field}.stop_control_plane[{i}]"),
                command,
            );
        }
        for (i, command) in self.start_control_plane.iter().enumerate() {
            argv(
                problems,
                format!("{field}.start_control_plane[{i}]"),
                command,
            );
        }
        argv(
            problems,
            format!("{field}.etcd_stopped_check"),
            &self.etcd_stopped_check,
        );
        if !self.force_stop_command.is_empty() {
            argv(
                problems,
                format!("{field}.force_stop_command"),
                &self.force_stop_command,
            );
        }
        if self.start_control_plane.is_empty() {
            problems.push(
                format!("{field}.start_control_plane"),
                "list at least one command, e.g. [[\"systemctl\", \"start\", \"kubelet\"]]",
            );
        }
        for (name, value) in [
            ("stop_timeout", self.stop_timeout),
            ("health_timeout", self.health_timeout),
            ("switchover_timeout", self.switchover_timeout),
        ] {
            if value < Duration::from_secs(1) {
                problems.push(format!("{field}.{name}"), "must be at least 1s");
            }
        }
        if !self.work_dir.is_absolute() {
            problems.push(format!("{field}.work_dir"), "must be an absolute path");
        }
        if let Some(kube) = &self.kubernetes {
            kube.validate(&format!("{field}.kubernetes"), problems);
        }
        if self.after.restart_workers {
            argv(
                problems,
                format!("{field}.after.worker_restart_command"),
                &self.after.worker_restart_command,
            );
        }
        for (i, kind) in self.after.rollout_restart.iter().enumerate() {
            if !matches!(kind.as_str(), "deployments" | "daemonsets" | "statefulsets") {
                problems.push(
                    format!("{field}.after.rollout_restart[{i}]"),
                    "must be one of \"deployments\", \"daemonsets\", \"statefulsets\"",
                );
            }
        }
        for (i, pods) in self.after.delete_pods.iter().enumerate() {
            if pods.namespace.is_empty() || pods.label_selector.is_empty() {
                problems.push(
                    format!("{field}.after.delete_pods[{i}]"),
                    "needs a namespace and a label_selector, e.g. { namespace = \"kube-system\", label_selector = \"k8s-app=kube-proxy\" }",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kubeadms() {
        let config: PromoteConfig = serde_json::from_value(
            serde_json::json!({ "etcd": { "endpoints": ["http://127.0.0.1:2379"] } }),
        )
        .unwrap();
        assert_eq!(config.etcd_manifest, "/etc/kubernetes/manifests/etcd.yaml");
        assert_eq!(config.revision_bump_margin, 1_000_000_000);
        assert_eq!(
            config.stop_control_plane[0],
            ["systemctl", "stop", "kubelet"]
        );
        assert_eq!(config.after.delete_pods.len(), 3);
        let mut problems = ConfigProblems::default();
        config.validate("promote", &mut problems);
        assert!(problems.is_empty(), "{problems}");
    }

    /// `sleep seconds` run as a copy of sleep at `program` (a process of that name).
    fn sleep_named(program: &std::path::Path, seconds: &str) -> std::process::Child {
        std::fs::copy("/bin/sleep", program).unwrap();
        // Another test forking while the copy was open for writing keeps it open in that child
        // until it execs: "text file busy" for a moment.
        let mut attempts = 0;
        loop {
            match std::process::Command::new(program).arg(seconds).spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                spawned => return spawned.unwrap(),
            }
        }
    }

    #[test]
    fn the_force_stop_kills_and_checks() {
        // Processes of names no one else uses: one short, one longer than the 15 bytes the
        // kernel keeps of a name (as kube-controller-manager is).
        let dir = tempfile::tempdir().unwrap();
        let id = std::process::id() % 1_000_000;
        let short = format!("edrfs{id}");
        let long = format!("e{id}-force-stop-long");
        let mut reapers = Vec::new();
        for name in [&short, &long] {
            let program = dir.path().join(name);
            let mut child = sleep_named(&program, "60");
            // Reaped at once, as kubelet's container runtime would (pgrep sees zombies).
            reapers.push(std::thread::spawn(move || child.wait().unwrap()));
        }
        let status = std::process::Command::new("sh")
            .args(["-c", &force_stop_script(&[&short, &long, "edrfs-absent"])])
            .status()
            .unwrap();
        assert!(status.success());
        for reaper in reapers {
            let waited = reaper.join().unwrap();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&waited),
                Some(9)
            );
        }
        let default = PromoteConfig::new(EtcdConfig::plain(vec![])).force_stop_command;
        for name in CONTROL_PLANE_PROCESSES {
            assert!(default[2].contains(name), "{default:?}");
        }
    }

    #[test]
    fn the_force_stop_names_what_survives() {
        // A zombie (its parent has not reaped it yet) outlives SIGKILL and pgrep still sees
        // it: the force stop gives up after 5 s and names it.
        let dir = tempfile::tempdir().unwrap();
        let name = format!("edrfz{}", std::process::id() % 1_000_000);
        let program = dir.path().join(&name);
        let mut child = sleep_named(&program, "0");
        // Not reaped until the script has given up: a zombie named `name`.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let output = std::process::Command::new("sh")
            .args(["-c", &force_stop_script(&[&name])])
            .output()
            .unwrap();
        child.wait().unwrap();
        assert!(!output.status.success());
        assert_eq!(
            String::from_utf8_lossy(&output.stderr).trim(),
            format!("still running after SIGKILL: {name}")
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let mut config =
            PromoteConfig::new(EtcdConfig::plain(vec!["http://127.0.0.1:2379".into()]));
        config.data_dir = Some("var/lib/etcd".into());
        config.stop_control_plane = vec![vec![]];
        config.start_control_plane = vec![];
        config.revision_bump_margin = 0;
        config.after.rollout_restart = vec!["pods".into()];
        config.kubernetes = Some(KubernetesConfig {
            api_server: None,
            kubeconfig: None,
            context: None,
            ca_file: None,
            cert_file: Some("/nonexistent/c".into()),
            key_file: None,
            token_file: None,
            request_timeout: Duration::from_secs(5),
            control_plane_servers: vec!["cp1:6443".into()],
        });
        let mut problems = ConfigProblems::default();
        config.validate("promote", &mut problems);
        let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "promote.data_dir",
                "promote.revision_bump_margin",
                "promote.stop_control_plane[0]",
                "promote.start_control_plane",
                "promote.kubernetes.api_server",
                "promote.kubernetes.control_plane_servers[0]",
                "promote.kubernetes.key_file",
                "promote.kubernetes.cert_file",
                "promote.after.rollout_restart[0]",
            ]
        );
    }
}
