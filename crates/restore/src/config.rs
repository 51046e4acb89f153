use std::path::PathBuf;
use std::time::Duration;

use etcd_dr_cluster_shape::ShapeChecks;
use etcd_dr_core::ConfigProblems;
use etcd_dr_scheduler::EtcdConfig;
use serde::{Deserialize, Serialize};

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
}

/// `[promote.kubernetes]`: how to reach the secondary's kube-apiserver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The API server URL, e.g. `https://k8s-eu.example:6443`. Taken from `kubeconfig` when
    /// unset.
    #[serde(default)]
    pub api_server: Option<String>,
    /// A kubeconfig (e.g. `/etc/kubernetes/admin.conf`): server, CA and credentials (client
    /// certificate, token, exec plugin).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use instead of its `current-context`; one it does not have is
    /// an error.
    #[serde(default)]
    pub context: Option<String>,
    /// CA bundle of the API server (instead of the kubeconfig's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (instead of the kubeconfig's).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (instead of the kubeconfig's).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// A file holding a bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Time allowed for one request.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Each control-plane node's own kube-apiserver (e.g. `https://10.1.0.11:6443`): the health
    /// step waits for `/readyz` and a list on every one. Empty: the kubeconfig's server only.
    #[serde(default)]
    pub control_plane_servers: Vec<String>,
}

/// `[promote.after]`: the steps after a healthy restore; each can be turned off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfterConfig {
    /// How long the first after-step waits for every Node to report Ready; those still not
    /// Ready then are named in a warning and the promotion goes on.
    #[serde(default = "default_nodes_ready_timeout", with = "humantime_serde")]
    pub nodes_ready_timeout: Duration,
    /// Run `worker_restart_command` on every worker node (`[nodes] workers`).
    #[serde(default = "default_true")]
    pub restart_workers: bool,
    /// What restarts kubelet on a worker.
    #[serde(default = "default_worker_restart")]
    pub worker_restart_command: Vec<String>,
    /// Workload kinds to rollout-restart (`deployments`, `daemonsets`, `statefulsets`).
    #[serde(default = "default_rollout_kinds")]
    pub rollout_restart: Vec<String>,
    /// Pods deleted (by label) so they start fresh.
    #[serde(default = "default_delete_pods")]
    pub delete_pods: Vec<PodSelector>,
}

/// Pods of one namespace chosen by a label selector.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodSelector {
    /// The namespace.
    pub namespace: String,
    /// A label selector, e.g. `k8s-app=kube-proxy`.
    pub label_selector: String,
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
fn default_true() -> bool {
    true
}
fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}
/// kubeadm: kubelet runs the static pods; without it they keep running until their containers
/// are stopped.
fn default_stop_commands() -> Vec<Vec<String>> {
    vec![
        words(&["systemctl", "stop", "kubelet"]),
        words(&[
            "sh",
            "-c",
            "for name in etcd kube-apiserver kube-controller-manager kube-scheduler; do \
             ids=$(crictl ps -q --name \"^$name\\$\"); \
             if [ -n \"$ids\" ]; then crictl stop $ids >/dev/null; fi; done",
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
/// fails naming those that are not.
pub(crate) fn force_stop_script(names: &[&str]) -> String {
    let names = names.join(" ");
    format!(
        "for name in {names}; do pkill -KILL -x \"$name\"; done; \
         for i in 1 2 3 4 5 6 7 8 9 10; do left=''; \
         for name in {names}; do pgrep -x \"$name\" >/dev/null && left=\"$left $name\"; done; \
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
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_work_dir() -> PathBuf {
    PathBuf::from("/var/lib/etcd-dr/promote")
}
fn default_nodes_ready_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_worker_restart() -> Vec<String> {
    words(&["systemctl", "restart", "kubelet"])
}
fn default_rollout_kinds() -> Vec<String> {
    words(&["deployments", "daemonsets"])
}
fn default_delete_pods() -> Vec<PodSelector> {
    [
        "k8s-app=kube-proxy",
        "component=kube-controller-manager",
        "component=kube-scheduler",
    ]
    .iter()
    .map(|selector| PodSelector {
        namespace: "kube-system".into(),
        label_selector: selector.to_string(),
    })
    .collect()
}

impl Default for AfterConfig {
    fn default() -> Self {
        Self {
            nodes_ready_timeout: default_nodes_ready_timeout(),
            restart_workers: true,
            worker_restart_command: default_worker_restart(),
            rollout_restart: default_rollout_kinds(),
            delete_pods: default_delete_pods(),
        }
    }
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
        for (name, value) in [("etcdutl", &self.etcdutl), ("etcdctl", &self.etcdctl)] {
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

impl KubernetesConfig {
    /// Reports every bad field under `field` (e.g. `promote.kubernetes`).
    pub fn validate(&self, field: &str, problems: &mut ConfigProblems) {
        if self.api_server.is_none() && self.kubeconfig.is_none() {
            problems.push(
                format!("{field}.api_server"),
                "set api_server or kubeconfig (e.g. \"/etc/kubernetes/admin.conf\")",
            );
        }
        if let Some(url) = &self.api_server {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(
                    format!("{field}.api_server"),
                    "must be a URL such as https://k8s.example:6443",
                );
            }
        }
        for (i, url) in self.control_plane_servers.iter().enumerate() {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(
                    format!("{field}.control_plane_servers[{i}]"),
                    "must be a URL such as https://10.1.0.11:6443",
                );
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            problems.push(
                format!("{field}.key_file"),
                "cert_file and key_file go together: set both or neither",
            );
        }
        for (name, path) in [
            ("kubeconfig", &self.kubeconfig),
            ("ca_file", &self.ca_file),
            ("cert_file", &self.cert_file),
            ("key_file", &self.key_file),
            ("token_file", &self.token_file),
        ] {
            problems.check_file(format!("{field}.{name}"), path.as_deref());
        }
        if self.request_timeout < Duration::from_secs(1) {
            problems.push(format!("{field}.request_timeout"), "must be at least 1s");
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

    #[test]
    fn the_force_stop_kills_and_checks() {
        // A process of a name no one else uses (pgrep -x compares at most 15 characters).
        let dir = tempfile::tempdir().unwrap();
        let name = format!("edrfs{}", std::process::id() % 1_000_000);
        let program = dir.path().join(&name);
        std::fs::copy("/bin/sleep", &program).unwrap();
        let mut child = std::process::Command::new(&program)
            .arg("60")
            .spawn()
            .unwrap();
        // Reaped at once, as kubelet's container runtime would (pgrep sees zombies).
        let reaper = std::thread::spawn(move || child.wait().unwrap());
        let status = std::process::Command::new("sh")
            .args(["-c", &force_stop_script(&[&name, "edrfs-absent"])])
            .status()
            .unwrap();
        assert!(status.success());
        let waited = reaper.join().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&waited),
            Some(9)
        );
        let default = PromoteConfig::new(EtcdConfig::plain(vec![])).force_stop_command;
        for name in CONTROL_PLANE_PROCESSES {
            assert!(default[2].contains(name), "{default:?}");
        }
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
