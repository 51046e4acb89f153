//! Everything a promotion needs, built once by the binary.

use std::path::PathBuf;
use std::sync::Arc;

use etcd_dr_nodes::Node;
use etcd_dr_scheduler::EtcdSource;
use etcd_dr_transport::{Identities, ManifestTrust, SnapshotLayout};
use object_store::ObjectStore;

use crate::{KubeClient, PromoteConfig, PromoteError, ServiceAccountKeys};

/// Everything a promotion needs, built once by the binary.
pub struct Promoter {
    pub(super) config: PromoteConfig,
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) layout: SnapshotLayout,
    pub(super) control_plane: Vec<Node>,
    pub(super) workers: Vec<Node>,
    pub(super) etcd: EtcdSource,
    pub(super) kube: Option<KubeClient>,
    /// The secondary's pre-staged snapshots (`<id>.db`), used when one matches.
    pub prestage_dir: Option<PathBuf>,
    /// The service-account keys to install instead of those in the snapshot's node bundles.
    pub service_account_keys: Option<ServiceAccountKeys>,
    /// The age identities that decrypt the snapshot and its bundles.
    pub identities: Identities,
    /// What a snapshot must be to be restored (signed by a trusted key, of this cluster,
    /// encrypted where required); refuses everything until the binary sets it.
    pub trust: ManifestTrust,
}

impl Promoter {
    /// Reads the TLS material of the secondary's etcd and Kubernetes API.
    pub fn new(
        config: PromoteConfig,
        store: Arc<dyn ObjectStore>,
        layout: SnapshotLayout,
        control_plane: Vec<Node>,
        workers: Vec<Node>,
    ) -> Result<Self, PromoteError> {
        let etcd = EtcdSource::new(config.etcd.clone())?;
        let kube = config
            .kubernetes
            .as_ref()
            .map(KubeClient::new)
            .transpose()?;
        Ok(Self {
            config,
            store,
            layout,
            control_plane,
            workers,
            etcd,
            kube,
            prestage_dir: None,
            service_account_keys: None,
            identities: Identities::none(),
            trust: ManifestTrust::refuse_all(),
        })
    }

    /// The control-plane nodes.
    pub fn control_plane(&self) -> &[Node] {
        &self.control_plane
    }

    /// The configured control-plane node called `name`.
    pub(super) fn control_plane_node(&self, name: &str) -> Option<&Node> {
        self.control_plane.iter().find(|n| n.name() == name)
    }
}
