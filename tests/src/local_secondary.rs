//! A secondary control plane of one node on this machine, for the promote and restore tests that
//! use the local executor: its own Kubernetes dir, data dir and etcd (run by the kubelet
//! stand-in of [`crate::kubelet`] from a kubeadm-shaped static pod manifest).

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_dr_restore::PromoteConfig;
use etcd_dr_scheduler::EtcdConfig;

use crate::kubelet::{
    answers, etcd_pod_manifest, kill_pidfile, toml_array, write_standin, EtcdPodSpec,
};
use crate::{free_port, wait_for, EtcdVersion};

/// This machine's host name: the name of the one node the local executor reaches.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the host name")
        .trim()
        .to_string()
}

/// One secondary control-plane node on this machine, its etcd killed on drop.
pub struct LocalSecondary {
    dir: tempfile::TempDir,
    standin: PathBuf,
    /// The etcd member's client URL.
    pub client_url: String,
    version: EtcdVersion,
}

impl LocalSecondary {
    /// Starts a node named `host` running etcd 3.5 and waits until it serves.
    pub fn start(host: &str) -> Self {
        Self::start_version(host, EtcdVersion::V3_5)
    }

    /// Starts a node named `host` running etcd `version` and waits until it serves.
    pub fn start_version(host: &str, version: EtcdVersion) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("etcd-dr-secondary-")
            .tempdir()
            .expect("secondary dir");
        let kube = dir.path().join("etc-kubernetes");
        std::fs::create_dir_all(kube.join("manifests")).unwrap();
        std::fs::create_dir_all(kube.join("pki")).unwrap();
        std::fs::write(kube.join("pki/sa.key"), "secondary sa.key").unwrap();
        std::fs::write(kube.join("pki/sa.pub"), "secondary sa.pub").unwrap();
        let data = dir.path().join("var-lib-etcd");
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let manifest = etcd_pod_manifest(&EtcdPodSpec {
            name: host,
            data_dir: data.to_str().unwrap(),
            client_url: &client_url,
            peer_url: &peer_url,
            initial_cluster: &format!("{host}={peer_url}"),
            token: "secondary",
            version: "3.5.16",
        });
        std::fs::write(kube.join("manifests/etcd.yaml"), manifest).unwrap();
        let standin = write_standin(dir.path());
        let node = Self {
            dir,
            standin,
            client_url,
            version,
        };
        node.kubelet("start");
        node.wait_serving();
        node
    }

    /// The node's scratch directory (tests put bastion work dirs and tokens in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The member's client URL, as a list of endpoints.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.client_url.clone()]
    }

    /// The node's `/etc/kubernetes`.
    pub fn kube(&self) -> PathBuf {
        self.dir.path().join("etc-kubernetes")
    }

    /// The node's etcd data dir.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("var-lib-etcd")
    }

    /// The stand-in's pid file content: changes whenever etcd was restarted.
    pub fn etcd_pid(&self) -> String {
        std::fs::read_to_string(self.kube().join("standin/etcd.pid")).expect("stand-in pid file")
    }

    /// The names in the data dir (`["member"]` until a restore moves things aside).
    pub fn data_dir_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.data())
            .expect("read the data dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn kubelet_argv(&self, action: &str) -> Vec<String> {
        vec![
            "sh".into(),
            self.standin.display().to_string(),
            action.into(),
            self.kube()
                .join("manifests/etcd.yaml")
                .display()
                .to_string(),
            self.kube().join("standin").display().to_string(),
            self.version.bin("etcd").display().to_string(),
        ]
    }

    fn kubelet(&self, action: &str) {
        let argv = self.kubelet_argv(action);
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .expect("run the kubelet stand-in");
        assert!(status.success(), "kubelet stand-in {action}");
    }

    /// Waits until the member answers.
    pub fn wait_serving(&self) {
        wait_for("the secondary's etcd", Duration::from_secs(20), || {
            answers(&self.client_url).then_some(())
        });
    }

    /// `[nodes]` (this host, local executor) and `[promote]` sections for the binary, with
    /// `extra_promote` lines added to `[promote]`.
    pub fn sections(&self, work: &Path, extra_promote: &str) -> String {
        let argv = |action: &str| toml_array(&self.kubelet_argv(action));
        format!(
            "[nodes]\ncontrol_plane = [\"{host}\"]\n[nodes.access]\ntype = \"local\"\n\
             [promote]\netcd_manifest = \"{manifest}\"\nkubernetes_dir = \"{kube}\"\netcdutl = \"{etcdutl}\"\n\
             require_service_account_keys = false\nstop_control_plane = [{stop}]\nstart_control_plane = [{start}]\n\
             etcd_stopped_check = {stopped}\nstop_timeout = \"20s\"\nhealth_timeout = \"30s\"\nwork_dir = \"{work}\"\n\
             {extra_promote}\n[promote.etcd]\nendpoints = [\"{client}\"]\n",
            host = this_host(),
            manifest = self.kube().join("manifests/etcd.yaml").display(),
            kube = self.kube().display(),
            // The restore tool of this node's etcd (3.4's etcdctl restores with 3.5's etcdutl).
            etcdutl = self.etcdutl().display(),
            stop = argv("stop"),
            start = argv("start"),
            stopped = argv("stopped"),
            work = work.display(),
            client = self.client_url,
        )
    }

    /// The `etcdutl` that restores this node's etcd: its own version's from 3.5 on (3.4 has
    /// none; its snapshots are restored by 3.5's or by `etcdctl`).
    pub fn etcdutl(&self) -> PathBuf {
        match self.version {
            EtcdVersion::V3_4 => EtcdVersion::V3_5.bin("etcdutl"),
            version => version.bin("etcdutl"),
        }
    }

    /// The promote configuration of the in-process promoter for this node, restoring with
    /// `etcdutl`.
    pub fn config(&self, etcdutl: &Path) -> PromoteConfig {
        let mut config = PromoteConfig::new(EtcdConfig::plain(vec![self.client_url.clone()]));
        config.etcd_manifest = self
            .kube()
            .join("manifests/etcd.yaml")
            .display()
            .to_string();
        config.kubernetes_dir = self.kube().display().to_string();
        config.etcdutl = etcdutl.display().to_string();
        config.stop_control_plane = vec![self.kubelet_argv("stop")];
        config.start_control_plane = vec![self.kubelet_argv("start")];
        config.etcd_stopped_check = self.kubelet_argv("stopped");
        config.stop_timeout = Duration::from_secs(20);
        config.health_timeout = Duration::from_secs(30);
        config.work_dir = self.dir.path().join("bastion-work");
        config
    }
}

impl Drop for LocalSecondary {
    fn drop(&mut self) {
        kill_pidfile(&self.kube().join("standin/etcd.pid"));
    }
}
