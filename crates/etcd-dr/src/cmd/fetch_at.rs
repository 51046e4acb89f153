//! `etcd-dr fetch --at REVISION`: the keyspace at one revision, from a full snapshot and the
//! replication segments after it.

use std::path::Path;

use anyhow::{bail, Context};
use etcd_dr_replication::{fetch_revision, EtcdBinaries, ReplicationLayout, RevisionSource};

use super::{identities, manifest_trust, open_store, shutdown_token};
use crate::settings::Settings;

pub async fn run(
    settings: &Settings,
    revision: i64,
    output: &Path,
    etcd: &Path,
    etcdutl: &Path,
) -> anyhow::Result<()> {
    if revision <= 0 {
        bail!("--at {revision}: a revision is a positive number");
    }
    let (store, snapshots) = open_store(settings)?;
    let segments = ReplicationLayout::new(&settings.store.prefix, &settings.cluster)?;
    let source = RevisionSource {
        store,
        snapshots,
        segments,
        identities: identities(settings)?,
        trust: manifest_trust(settings)?,
        binaries: EtcdBinaries {
            etcd: etcd.to_path_buf(),
            etcdutl: etcdutl.to_path_buf(),
        },
    };
    let work_dir = output
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let cancel = shutdown_token();
    let fetched = fetch_revision(&source, revision, output.to_path_buf(), work_dir, &cancel)
        .await
        .with_context(|| format!("fetching revision {revision}"))?;
    let report = &fetched.report;
    println!(
        "revision {revision} written to {} (snapshot {} at revision {}, {} revisions replayed from generation {} in {:.1} s)",
        output.display(),
        fetched.snapshot,
        report.base_revision,
        report.replayed_revisions,
        fetched.generation,
        report.replay_time.as_secs_f64()
    );
    Ok(())
}
