//! Continuous replication in the daemon, against real etcd 3.5: the primary captures every
//! revision into segments while writes flow, reports a lag of seconds (and about none when
//! idle), continues its chain across a kill, starts a new generation (counted) after being away
//! longer than etcd's history, and removes generations no kept snapshot needs; the secondary
//! verifies the chain and measures its lag from the store alone, never from a heartbeat the
//! primary did not sign.

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_e2e::daemon::{stop, write_token, Api};
use etcd_dr_e2e::{
    block_on, segment_signer, terminate, test_trust, wait_for, EtcdCluster, EtcdDr, EtcdOptions,
    StoreTarget,
};
use etcd_dr_replication::{
    list_generations, write_heartbeat, ChainReader, GenerationId, ReplicationHeartbeat,
    ReplicationLayout,
};
use etcd_dr_transport::Identities;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

/// Quick cuts and heartbeats, so the test sees lag in tenths of seconds.
const REPLICATION: &str = "[replication]\nenabled = true\ncut_interval = \"300ms\"\nheartbeat_interval = \"300ms\"\npoll_interval = \"300ms\"\nretry_interval = \"500ms\"\n";

/// A primary daemon with replication on, shipping into a local store.
struct ReplicatingPrimary {
    dr: EtcdDr,
    api: Api,
    child: Option<Child>,
    starts: usize,
}

impl ReplicatingPrimary {
    fn new(etcd: &EtcdCluster, store: &Path, extra: &str) -> Self {
        let api = Api::on_free_port();
        let dr = EtcdDr::with_sections(
            "prod",
            &etcd.config_section(&etcd.endpoints()),
            &StoreTarget::Local(store),
            "",
        );
        let token = write_token(dr.dir());
        dr.append_config(&format!(
            "[schedule]\ninterval = \"1h\"\n{REPLICATION}{extra}{}",
            api.section(&token, "")
        ));
        let mut primary = Self {
            dr,
            api,
            child: None,
            starts: 0,
        };
        primary.start();
        primary
    }

    fn log_name(&self) -> String {
        format!("primary-{}.log", self.starts)
    }

    fn start(&mut self) {
        self.starts += 1;
        let log = self.log_name();
        let mut child = self.dr.spawn(&["run"], &log);
        let dr = &self.dr;
        wait_for("the primary's API", Duration::from_secs(20), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the primary exited ({status}): {}", dr.log(&log));
            }
            etcd_dr_e2e::http_request(self.api.addr, "GET", "/healthz", &[], b"").ok()
        });
        self.child = Some(child);
    }

    /// SIGTERM, as systemd stops it.
    fn stop(&mut self) {
        let child = self.child.take().expect("running");
        stop(child, &self.dr, &self.log_name());
    }

    /// SIGKILL: no flush, no last heartbeat.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    fn metric(&self, name: &str) -> f64 {
        self.api.metric(name)
    }

    /// Waits until the daemon has stored `revision`.
    fn wait_stored(&self, revision: i64) {
        wait_for(
            &format!("revision {revision} stored"),
            Duration::from_secs(30),
            || {
                (self.metric("etcd_dr_replication_stored_revision") >= revision as f64)
                    .then_some(())
            },
        );
    }
}

impl Drop for ReplicatingPrimary {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(&child);
            let _ = child.wait_with_output();
        }
    }
}

/// Puts `count` keys, a few milliseconds apart; returns the last revision.
fn write_keys(etcd: &EtcdCluster, prefix: &str, count: usize) -> i64 {
    let mut revision = 0;
    for i in 0..count {
        revision = etcd.put(&format!("{prefix}/{i:04}"), format!("value {i}").as_bytes());
        std::thread::sleep(Duration::from_millis(5));
    }
    revision
}

fn store_of(dir: &Path) -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new_with_prefix(dir).expect("local store"))
}

fn layout() -> ReplicationLayout {
    ReplicationLayout::new("", "prod").expect("layout")
}

/// Every generation in the store, each with the revisions of its chain read and verified
/// segment by segment (a missing, duplicated or altered segment fails here).
fn verified_chains(store_dir: &Path) -> Vec<(GenerationId, Vec<i64>)> {
    verified_chains_with(store_dir, Identities::none())
}

/// [`verified_chains`] of encrypted segments.
fn verified_chains_with(store_dir: &Path, identities: Identities) -> Vec<(GenerationId, Vec<i64>)> {
    let store = store_of(store_dir);
    block_on(async move {
        let cancel = CancellationToken::new();
        let mut chains = Vec::new();
        for generation in list_generations(&store, &layout(), &cancel).await.unwrap() {
            let mut reader = ChainReader::open(
                store.clone(),
                layout(),
                generation.clone(),
                identities.clone(),
                test_trust("prod", false),
                &cancel,
            )
            .await
            .unwrap();
            let mut revisions = Vec::new();
            while let Some((_, segment)) = reader.next_segment(&cancel).await.unwrap() {
                revisions.extend(segment.revisions.iter().map(|r| r.revision));
            }
            chains.push((generation, revisions));
        }
        chains
    })
}

/// The revisions must be exactly `from..=to`: no gap, no duplicate.
fn assert_consecutive(revisions: &[i64], from: i64, to: i64) {
    let expected: Vec<i64> = (from..=to).collect();
    assert!(
        revisions == expected.as_slice(),
        "chain holds {} revisions from {:?} to {:?}; expected {from}..={to}",
        revisions.len(),
        revisions.first(),
        revisions.last()
    );
}

fn snapshot_revisions(dr: &EtcdDr) -> Vec<i64> {
    dr.list_json()
        .iter()
        .map(|m| m["etcd"]["revision"].as_i64().expect("revision"))
        .collect()
}

#[test]
fn the_primary_stores_every_revision_within_seconds_and_an_idle_cluster_shows_no_lag() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let primary = ReplicatingPrimary::new(&etcd, store.path(), "");
    assert_eq!(primary.metric("etcd_dr_replication_enabled"), 1.0);
    wait_for("a generation to start", Duration::from_secs(30), || {
        primary.api.status()["replication"]["generation"]
            .as_str()
            .map(str::to_string)
    });

    let last = write_keys(&etcd, "busy", 300);
    primary.wait_stored(last);
    let lag = primary.metric("etcd_dr_replication_lag_seconds");
    assert!(
        (0.0..5.0).contains(&lag),
        "lag {lag} s right after the writes"
    );
    assert!(primary.metric("etcd_dr_replication_segments_total") >= 2.0);
    assert!(primary.metric("etcd_dr_replication_segment_bytes_total") > 0.0);
    assert_eq!(
        primary.metric("etcd_dr_replication_captured_revision"),
        last as f64
    );

    // Idle for 3 s: etcd is asked for its revision every cut, so the lag stays near zero.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        let lag = primary.metric("etcd_dr_replication_lag_seconds");
        assert!((0.0..1.5).contains(&lag), "idle lag {lag} s");
    }
    let status = primary.api.status();
    assert_eq!(
        status["replication"]["restorable_revision"], last,
        "{status}"
    );
    assert_eq!(status["replication"]["stored_revision"], last, "{status}");

    // One generation, based on a stored full snapshot, holding every revision after it once.
    let chains = verified_chains(store.path());
    assert_eq!(chains.len(), 1, "{chains:?}");
    let (generation, revisions) = &chains[0];
    // One full snapshot at start serves both the schedule's first run and the generation.
    assert_eq!(
        snapshot_revisions(&primary.dr),
        [generation.base_revision()],
        "generation {generation} must start from the one snapshot taken at start-up"
    );
    assert_eq!(
        primary.metric("etcd_dr_snapshots_total{result=\"success\"}"),
        1.0
    );
    assert_consecutive(revisions, generation.base_revision() + 1, last);
}

#[test]
fn a_killed_primary_continues_its_chain_without_gap_or_duplicate() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let mut primary = ReplicatingPrimary::new(&etcd, store.path(), "");
    let before = write_keys(&etcd, "before", 100);
    primary.wait_stored(before);
    // Killed while writes flow: what it captured but did not store is captured again.
    let writer = {
        let (endpoints, options) = etcd.connect_parts();
        std::thread::spawn(move || {
            block_on(async move {
                let mut client = etcd_client::Client::connect(endpoints, Some(options))
                    .await
                    .unwrap();
                for i in 0..200 {
                    client
                        .put(format!("during/{i:04}"), "v", None)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    primary.kill();
    writer.join().unwrap();
    let away = write_keys(&etcd, "away", 50);
    primary.start();
    let after = write_keys(&etcd, "after", 50);
    assert!(after > away);
    primary.wait_stored(after);
    assert_eq!(
        primary.metric("etcd_dr_replication_generation_breaks_total{reason=\"compacted\"}"),
        0.0
    );

    let chains = verified_chains(store.path());
    assert_eq!(
        chains.len(),
        1,
        "a restart must not start a new generation: {chains:?}"
    );
    let (generation, revisions) = &chains[0];
    assert_consecutive(revisions, generation.base_revision() + 1, after);
}

#[test]
fn a_primary_that_cannot_decrypt_its_segments_continues_its_chain_after_a_restart() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let (identity, recipient) = etcd_dr_transport::generate_identity();
    let mut primary = ReplicatingPrimary::new(
        &etcd,
        store.path(),
        &format!("[encryption]\nrecipients = [\"{recipient}\"]\n"),
    );
    let before = write_keys(&etcd, "before", 60);
    primary.wait_stored(before);
    primary.stop();
    write_keys(&etcd, "away", 20);
    primary.start();
    let after = write_keys(&etcd, "after", 60);
    primary.wait_stored(after);

    let keys = tempfile::tempdir().unwrap();
    let identity_path = keys.path().join("identity.txt");
    std::fs::write(&identity_path, identity).unwrap();
    let identities = Identities::load(&identity_path).unwrap();
    let chains = verified_chains_with(store.path(), identities);
    assert_eq!(
        chains.len(),
        1,
        "a restart must not start a new generation: {chains:?}"
    );
    let (generation, revisions) = &chains[0];
    assert_consecutive(revisions, generation.base_revision() + 1, after);
}

#[test]
fn away_longer_than_etcds_history_starts_a_new_generation_and_retention_drops_the_old_one() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let mut primary = ReplicatingPrimary::new(&etcd, store.path(), "[retention]\nkeep_last = 1\n");
    let stored = write_keys(&etcd, "first", 50);
    primary.wait_stored(stored);
    primary.stop();

    // While it is away, etcd moves on and compacts its history past the stored chain.
    let compacted = write_keys(&etcd, "away", 20);
    let output = etcd.etcdctl(&etcd.endpoints(), &["compact", &compacted.to_string()]);
    assert!(output.status.success(), "{output:?}");

    primary.start();
    wait_for("the compaction break", Duration::from_secs(30), || {
        (primary.metric("etcd_dr_replication_generation_breaks_total{reason=\"compacted\"}") == 1.0)
            .then_some(())
    });
    let status = primary.api.status();
    let problem = status["replication"]["last_problem"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(problem.contains("compacted"), "{status}");
    let last = write_keys(&etcd, "second", 50);
    primary.wait_stored(last);
    // The restart's scheduled snapshot and the new generation's are one.
    assert_eq!(
        primary.metric("etcd_dr_snapshots_total{result=\"success\"}"),
        1.0
    );

    let chains = verified_chains(store.path());
    assert!(chains.len() >= 2, "{chains:?}");
    let (old, old_revisions) = &chains[0];
    // Nothing claimed that was not stored: the old chain ends where the first run stopped.
    assert_consecutive(old_revisions, old.base_revision() + 1, stored);
    let (new, new_revisions) = chains.last().unwrap();
    assert!(
        new.base_revision() >= compacted,
        "{new} starts below the compaction"
    );
    assert!(snapshot_revisions(&primary.dr).contains(&new.base_revision()));
    assert_consecutive(new_revisions, new.base_revision() + 1, last);

    // A new snapshot (keep_last = 1): the old generation ends below every kept snapshot and
    // goes; the new one, which the kept snapshot needs, stays whole.
    let response = primary.api.post_json("/v1/snapshots", "{}");
    assert_eq!(response.status, 202, "{}", response.text());
    // Listed only while removal runs (a chain read then could meet a segment just removed).
    wait_for(
        "the old generation removed",
        Duration::from_secs(60),
        || {
            let store = store_of(store.path());
            let generations = block_on(async move {
                list_generations(&store, &layout(), &CancellationToken::new())
                    .await
                    .unwrap()
            });
            (generations.len() == 1).then_some(())
        },
    );
    let kept = verified_chains(store.path());
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(&kept[0].0, new);
    assert!(kept[0].1.starts_with(new_revisions));
    let snapshots = snapshot_revisions(&primary.dr);
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert!(snapshots[0] >= new.base_revision());
}

#[test]
fn a_fenced_primary_stops_capturing() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let primary = ReplicatingPrimary::new(
        &etcd,
        store.path(),
        "[fencing]\npoll_interval = \"200ms\"\n",
    );
    let stored = write_keys(&etcd, "before", 40);
    primary.wait_stored(stored);
    let newest = primary.dr.list_json().last().expect("a snapshot")["id"]
        .as_str()
        .unwrap()
        .to_string();
    etcd_dr_e2e::promotion::write_marker(store.path(), "p-42", &newest);
    wait_for("the primary to be fenced", Duration::from_secs(10), || {
        (primary.api.status()["fenced"] == true).then_some(())
    });
    // Within a fraction of a second of the fence being seen, the capture stops (what it had
    // captured by then is stored, as a snapshot under way would be).
    write_keys(&etcd, "during", 20);
    std::thread::sleep(Duration::from_secs(1));
    let at_fence = verified_chains(store.path());
    write_keys(&etcd, "after", 40);
    std::thread::sleep(Duration::from_secs(2));
    // Nothing more goes into the fenced prefix: the chain is as it was when the fence was seen.
    assert_eq!(verified_chains(store.path()), at_fence);
    let chain_end = at_fence.last().and_then(|(_, r)| r.last().copied());
    assert!(chain_end.is_some_and(|end| end >= stored && end < etcd.revision()));
}

#[test]
fn the_secondary_verifies_the_chain_and_sees_a_dead_primary_as_lag() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let mut primary = ReplicatingPrimary::new(&etcd, store.path(), "");
    let secondary_api = Api::on_free_port();
    let secondary = EtcdDr::with_sections(
        "prod",
        "",
        &StoreTarget::Local(store.path()),
        "role = \"secondary\"",
    );
    let token = write_token(secondary.dir());
    secondary.append_config(&format!(
        "[secondary]\npoll_interval = \"1s\"\nverify = false\n{REPLICATION}{}",
        secondary_api.section(&token, "")
    ));
    let secondary_child = etcd_dr_e2e::KillOnDrop::new(secondary.spawn(&["run"], "secondary.log"));
    secondary_api.wait_ready();

    let last = write_keys(&etcd, "k", 200);
    primary.wait_stored(last);
    wait_for(
        "the secondary to verify the chain",
        Duration::from_secs(30),
        || {
            (secondary_api.metric("etcd_dr_replication_stored_revision") >= last as f64)
                .then_some(())
        },
    );
    let status = secondary_api.status();
    assert_eq!(
        status["replication"]["restorable_revision"], last,
        "{status}"
    );
    // Idle: the primary's heartbeat keeps the secondary's lag small.
    std::thread::sleep(Duration::from_secs(2));
    let lag = secondary_api.metric("etcd_dr_replication_lag_seconds");
    assert!(
        (0.0..3.0).contains(&lag),
        "secondary lag {lag} s on an idle cluster"
    );

    // The primary dies: its heartbeat stops and the secondary's lag grows with the time.
    primary.kill();
    std::thread::sleep(Duration::from_secs(4));
    let lag = secondary_api.metric("etcd_dr_replication_lag_seconds");
    assert!(
        lag >= 3.5,
        "secondary lag {lag} s with the primary dead for 4 s"
    );
    assert_eq!(
        secondary_api.metric("etcd_dr_replication_heartbeats_refused_total"),
        0.0,
        "the primary's own (signed) heartbeats are accepted"
    );

    // A store writer forges the heartbeat to make the lag look small: unsigned, then signed by
    // a key the secondary does not trust. Neither moves the lag; each is counted and named.
    let generation = status["replication"]["generation"]
        .as_str()
        .expect("a generation")
        .to_string();
    let forged = |signer: Option<etcd_dr_replication::SegmentSigner>| {
        let now = chrono::Utc::now();
        let mut heartbeat = ReplicationHeartbeat {
            generation: generation.clone(),
            stored_revision: last,
            etcd_revision: last,
            complete_as_of: now,
            written_at: now,
            tail: None,
            signature: None,
        };
        if let Some(signer) = signer {
            signer.sign_heartbeat(&mut heartbeat);
        }
        let store = store_of(store.path());
        block_on(async move {
            write_heartbeat(&store, &layout(), &heartbeat, &CancellationToken::new())
                .await
                .unwrap()
        });
    };
    let (stranger_key, _) = etcd_dr_transport::generate_signing_key();
    for (n, signer) in [None, Some(segment_signer(&stranger_key, "prod"))]
        .into_iter()
        .enumerate()
    {
        let before = secondary_api.metric("etcd_dr_replication_lag_seconds");
        forged(signer);
        wait_for(
            "the forged heartbeat refused",
            Duration::from_secs(10),
            || {
                (secondary_api.metric("etcd_dr_replication_heartbeats_refused_total") > n as f64)
                    .then_some(())
            },
        );
        std::thread::sleep(Duration::from_secs(1));
        let lag = secondary_api.metric("etcd_dr_replication_lag_seconds");
        assert!(
            lag >= before + 0.5,
            "a forged heartbeat changed the secondary's lag from {before} s to {lag} s"
        );
        let status = secondary_api.status();
        let problem = status["replication"]["last_problem"]["message"]
            .as_str()
            .unwrap_or_default();
        let why = if n == 0 {
            "is not signed"
        } else {
            "not among signing.trusted_keys"
        };
        assert!(
            problem.contains("replication-progress.json` is refused") && problem.contains(why),
            "{status}"
        );
    }
    drop(secondary_child);
}

#[test]
fn a_generation_older_than_max_generation_age_hands_over_to_a_new_one_without_a_gap() {
    let etcd = EtcdCluster::start(EtcdOptions::default());
    let store = tempfile::tempdir().unwrap();
    let primary = ReplicatingPrimary::new(&etcd, store.path(), "max_generation_age = \"3s\"\n");
    wait_for("a generation to start", Duration::from_secs(30), || {
        primary.api.status()["replication"]["generation"]
            .as_str()
            .map(str::to_string)
    });
    // Writes flow across at least two hand-overs.
    let started = std::time::Instant::now();
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(8) {
        last = write_keys(&etcd, "flow", 20);
    }
    wait_for("two hand-overs", Duration::from_secs(30), || {
        (verified_chains(store.path()).len() >= 3).then_some(())
    });
    let last = last.max(write_keys(&etcd, "end", 5));
    primary.wait_stored(last);
    assert_eq!(
        primary.metric("etcd_dr_replication_generation_breaks_total{reason=\"compacted\"}"),
        0.0
    );

    // Every generation starts above a stored full snapshot and holds every revision after it;
    // each one before the newest reaches the next one's base: no revision is left to a
    // snapshot alone.
    let chains = verified_chains(store.path());
    let snapshots = snapshot_revisions(&primary.dr);
    for (generation, revisions) in &chains {
        assert!(
            snapshots.contains(&generation.base_revision()),
            "{generation} starts from no stored snapshot ({snapshots:?})"
        );
        let end = revisions
            .last()
            .copied()
            .unwrap_or(generation.base_revision());
        assert_consecutive(revisions, generation.base_revision() + 1, end);
    }
    for pair in chains.windows(2) {
        let ((old, old_revisions), (new, _)) = (&pair[0], &pair[1]);
        let old_end = old_revisions.last().copied().unwrap_or(old.base_revision());
        assert!(
            old_end >= new.base_revision(),
            "{old} ends at {old_end}, below {new}'s base: a gap"
        );
    }
    // (An idle generation can be empty: its base is then the revision its predecessor ended at.)
    let newest_stored = chains.iter().filter_map(|(_, r)| r.last().copied()).max();
    assert_eq!(newest_stored, Some(last), "{chains:?}");
    let status = primary.api.status();
    assert_eq!(
        status["replication"]["restorable_revision"], last,
        "{status}"
    );
}

/// The primary's etcd is restored from an older snapshot while the daemon runs (an operator's
/// restore without a revision bump): `rewound_cluster_id` false keeps its cluster id (etcd went
/// back in time under the same identity), true gives it another. Returns the primary, the
/// revision the chain held before, and the store.
fn rewind_under_a_running_capture(
    rewound_cluster_id: bool,
) -> (ReplicatingPrimary, EtcdCluster, i64, i64, tempfile::TempDir) {
    let mut etcd = EtcdCluster::start(EtcdOptions::default());
    write_keys(&etcd, "old", 20);
    let scratch = tempfile::tempdir().unwrap();
    let older = scratch.path().join("older.db");
    let saved = etcd.etcdctl(
        &etcd.endpoints(),
        &["snapshot", "save", older.to_str().unwrap()],
    );
    assert!(saved.status.success(), "{saved:?}");
    let older_revision = etcd.revision();
    // The daemon's first snapshot lies above the rewound revision: after the rewind it is in
    // the new generation's revision range, and of the old history.
    write_keys(&etcd, "before-start", 5);
    let store = tempfile::tempdir().unwrap();
    let primary = ReplicatingPrimary::new(&etcd, store.path(), "");
    let held = write_keys(&etcd, "first", 60);
    primary.wait_stored(held);

    etcd.rewind_to(&older, rewound_cluster_id);
    assert_eq!(etcd.revision(), older_revision);
    (primary, etcd, held, older_revision, store)
}

/// etcd restored under the same cluster id to a revision below the chain: the capture does not
/// join its next revisions to the chain (their numbers were the old history's): it counts a
/// regression, and a new generation starts from a new full snapshot.
#[test]
fn an_etcd_rewound_under_the_same_cluster_id_ends_the_generation_as_a_regression() {
    let (primary, etcd, held, older_revision, store) = rewind_under_a_running_capture(false);
    wait_for("the regression break", Duration::from_secs(60), || {
        (primary.metric("etcd_dr_replication_generation_breaks_total{reason=\"regression\"}")
            == 1.0)
            .then_some(())
    });
    let problem = primary.api.status()["replication"]["last_problem"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        problem.contains(&format!(
            "etcd reports revision {older_revision}, below revision {held}"
        )),
        "{problem}"
    );
    // New history, numbered over the old one's revisions.
    let last = write_keys(&etcd, "second", (held - older_revision + 30) as usize);
    assert!(last > held);
    primary.wait_stored(last);

    let chains = verified_chains(store.path());
    assert_eq!(chains.len(), 2, "{chains:?}");
    // Nothing claimed that was not the old history: the old chain ends where it was.
    let (old, old_revisions) = &chains[0];
    assert_consecutive(old_revisions, old.base_revision() + 1, held);
    let (new, new_revisions) = &chains[1];
    assert!(
        (older_revision..=last).contains(&new.base_revision()),
        "{new} starts from the rewound etcd"
    );
    assert!(snapshot_revisions(&primary.dr).contains(&new.base_revision()));
    assert_consecutive(new_revisions, new.base_revision() + 1, last);
    // `latest` is the rewound etcd's snapshot, below the old history's: it says it starts a
    // new history of the same cluster id (signed), and readers order it last.
    let manifests = primary.dr.list_json();
    let (oldest, newest) = (&manifests[0]["etcd"], &manifests.last().unwrap()["etcd"]);
    assert!(
        oldest["revision"].as_i64().unwrap() > older_revision,
        "{manifests:?}"
    );
    assert_eq!(newest["revision"], new.base_revision(), "{manifests:?}");
    assert_eq!(newest["rewound_from_revision"], oldest["revision"]);
    assert_eq!(newest["cluster_id"], oldest["cluster_id"]);
    // The newest revision restores to the rewound etcd's keyspace: none of the old history.
    let restored = store.path().join("restored.db");
    primary.dr.run_ok(&[
        "fetch",
        "--at",
        "newest",
        "--output",
        restored.to_str().unwrap(),
    ]);
    let check = EtcdCluster::start_restored(&restored, etcd.version());
    assert_eq!(check.dump(), etcd.dump());
}

/// etcd restored under another cluster id: a `cluster_changed` break, and the new generation's
/// full snapshot names the cluster id before it.
#[test]
fn an_etcd_restored_as_another_cluster_ends_the_generation_and_the_snapshot_names_the_old_id() {
    let (primary, etcd, held, _, store) = rewind_under_a_running_capture(true);
    wait_for("the cluster change break", Duration::from_secs(60), || {
        (primary.metric("etcd_dr_replication_generation_breaks_total{reason=\"cluster_changed\"}")
            == 1.0)
            .then_some(())
    });
    let last = write_keys(&etcd, "second", 20);
    primary.wait_stored(last);
    let chains = verified_chains(store.path());
    assert_eq!(chains.len(), 2, "{chains:?}");
    assert_consecutive(&chains[0].1, chains[0].0.base_revision() + 1, held);
    assert_consecutive(&chains[1].1, chains[1].0.base_revision() + 1, last);
    let manifests = primary.dr.list_json();
    let first = &manifests[0]["etcd"];
    let newest = &manifests.last().unwrap()["etcd"];
    assert_ne!(first["cluster_id"], newest["cluster_id"]);
    assert_eq!(newest["previous_cluster_id"], first["cluster_id"]);
}
