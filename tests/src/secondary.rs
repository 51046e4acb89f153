//! The secondary control plane of the promote tests: three namespace nodes cp1..cp3 (see
//! [`crate::nodes`]), each running a member of a three-member etcd through the kubelet stand-in
//! (see [`crate::kubelet`]) from its own `/etc/kubernetes/manifests/etcd.yaml`. The members
//! live in the nodes' PID namespaces and end with the nodes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_dr_nodes::Node;
use etcd_dr_restore::PromoteConfig;
use etcd_dr_scheduler::EtcdConfig;

use crate::kubelet::{
    answers, etcd_pod_manifest, member_names, toml_array, write_standin, EtcdPodSpec,
};
use crate::nodes::{ControlPlaneNodes, KubeadmFiles};
use crate::{wait_for, EtcdVersion};

/// The secondary control plane on three namespace nodes: each node's etcd (3 members, plain
/// HTTP on the node's own loopback address) run by the kubelet stand-in from its own
/// `/etc/kubernetes/manifests/etcd.yaml`.
pub struct SshSecondary {
    /// The three nodes.
    pub ground: ControlPlaneNodes,
    /// The kubelet stand-in script.
    pub standin: PathBuf,
    /// The members' client URLs (after [`Self::become_secondary`]).
    pub client_urls: Vec<String>,
    /// The kubeadm-shaped files the nodes were given.
    pub files: KubeadmFiles,
    /// The etcd version the nodes run (and whose `etcdutl` restores).
    pub version: EtcdVersion,
}

/// Where the stand-in keeps its pid and log, on each node.
pub const STANDIN_STATE: &str = "/etc/kubernetes/standin";
/// The static pod manifest the stand-in runs, on each node.
pub const ETCD_MANIFEST: &str = "/etc/kubernetes/manifests/etcd.yaml";

impl SshSecondary {
    /// Starts the nodes with kubeadm-shaped files (these play the primary's nodes for the
    /// bundles); call [`Self::become_secondary`] once the snapshot is taken.
    pub fn start() -> Self {
        Self::start_version(EtcdVersion::V3_5)
    }

    /// [`Self::start`] with nodes that run etcd `version`.
    pub fn start_version(version: EtcdVersion) -> Self {
        let ground = ControlPlaneNodes::start(3);
        let files = ground.populate_kubeadm();
        let standin = write_standin(ground.dir());
        Self {
            ground,
            standin,
            client_urls: Vec::new(),
            files,
            version,
        }
    }

    /// Gives every node the secondary's own service-account keys and etcd (its own peer URLs,
    /// same member names), starts them and waits until the cluster serves.
    pub fn become_secondary(&mut self) {
        let (members, initial_cluster) = self.ground.etcd_members(3);
        for (index, member) in members.iter().enumerate() {
            let node = self.ground.node(index);
            let name = &member.name;
            std::fs::write(
                node.host_path(ETCD_MANIFEST),
                etcd_pod_manifest(&EtcdPodSpec {
                    name,
                    data_dir: "/var/lib/etcd",
                    client_url: &member.client_url,
                    peer_url: &member.peer_url,
                    initial_cluster: &initial_cluster,
                    token: "secondary",
                    version: "3.5.16",
                }),
            )
            .unwrap();
            std::fs::write(
                node.host_path("/etc/kubernetes/pki/sa.key"),
                format!("secondary sa.key of {name}"),
            )
            .unwrap();
            std::fs::write(
                node.host_path("/etc/kubernetes/pki/sa.pub"),
                format!("secondary sa.pub of {name}"),
            )
            .unwrap();
        }
        self.client_urls = members.into_iter().map(|m| m.client_url).collect();
        for index in 0..3 {
            let out = self
                .ground
                .ssh(index, &self.kubelet_argv("start").join(" "));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.wait_serving();
    }

    /// The stand-in's argv for `action` (`start`, `stop`, `stopped`) on a node.
    pub fn kubelet_argv(&self, action: &str) -> Vec<String> {
        vec![
            "sh".into(),
            self.standin.display().to_string(),
            action.into(),
            ETCD_MANIFEST.into(),
            STANDIN_STATE.into(),
            self.version.bin("etcd").display().to_string(),
        ]
    }

    /// Waits until every member answers and the cluster lists three members.
    pub fn wait_serving(&self) {
        for url in &self.client_urls {
            wait_for("a secondary member", Duration::from_secs(30), || {
                answers(url).then_some(())
            });
        }
        wait_for("the secondary's leader", Duration::from_secs(30), || {
            (member_names(&self.client_urls).len() == 3).then_some(())
        });
    }

    /// A promote configuration for these nodes: the stand-in stops and starts etcd.
    pub fn config(&self, work: &Path) -> PromoteConfig {
        let mut config = PromoteConfig::new(EtcdConfig::plain(self.client_urls.clone()));
        config.stop_control_plane = vec![self.kubelet_argv("stop")];
        config.start_control_plane = vec![self.kubelet_argv("start")];
        config.etcd_stopped_check = self.kubelet_argv("stopped");
        config.stop_timeout = Duration::from_secs(20);
        config.health_timeout = Duration::from_secs(40);
        config.work_dir = work.to_path_buf();
        config.etcdutl = self.version.bin("etcdutl").display().to_string();
        config
    }

    /// `[nodes]` (these nodes over ssh, commands allowed `command_timeout`) and `[promote]`
    /// sections for the binary, the same promotion as [`Self::config`].
    pub fn config_sections(&self, work: &Path, command_timeout: &str) -> String {
        let argv = |action: &str| toml_array(&self.kubelet_argv(action));
        format!(
            "[nodes]\ncontrol_plane = {names}\n[nodes.access]\ntype = \"ssh\"\nssh_config = \"{ssh}\"\n\
             connect_timeout = \"5s\"\ncommand_timeout = \"{command_timeout}\"\n\
             [promote]\nrequire_service_account_keys = false\nstop_control_plane = [{stop}]\n\
             start_control_plane = [{start}]\netcd_stopped_check = {stopped}\nstop_timeout = \"30s\"\n\
             health_timeout = \"120s\"\nwork_dir = \"{work}\"\netcdutl = \"{etcdutl}\"\n\
             [promote.etcd]\nendpoints = {endpoints}\n",
            names = toml_array(&self.ground.names()),
            ssh = self.ground.ssh_config().display(),
            stop = argv("stop"),
            start = argv("start"),
            stopped = argv("stopped"),
            work = work.display(),
            etcdutl = self.version.bin("etcdutl").display(),
            endpoints = toml_array(&self.client_urls),
        )
    }

    /// The nodes, reached over ssh with the ground's ssh config.
    pub fn nodes(&self) -> Vec<Node> {
        self.ground.ssh_nodes()
    }
}
