//! Waiting for the restored control plane: every etcd endpoint healthy, one leader, the expected
//! members, revisions at or above the bump; then every control-plane kube-apiserver ready and
//! serving a list.

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_dr_scheduler::{ClusterSurvey, EtcdSource};
use tokio_util::sync::CancellationToken;

use crate::kube::KubeClient;
use crate::PromoteError;

/// What a healthy cluster showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthyCluster {
    /// The leader's member name.
    pub leader: String,
    /// Lowest revision any endpoint reported.
    pub revision: i64,
    /// Member names.
    pub members: Vec<String>,
}

/// Judges one survey: `Ok` when every configured endpoint answered without errors, they agree
/// on one leader, the member names are exactly `expected` and every revision is at least
/// `min_revision`; else what is still wrong.
pub fn judge_health(
    survey: &ClusterSurvey,
    expected: &[String],
    min_revision: i64,
) -> Result<HealthyCluster, String> {
    let mut statuses = Vec::new();
    for report in &survey.endpoints {
        match &report.status {
            Ok(status) if status.errors.is_empty() => statuses.push(status),
            Ok(status) => {
                return Err(format!(
                    "{} reports {}",
                    report.endpoint,
                    status.errors.join("; ")
                ))
            }
            Err(error) => return Err(format!("{} does not answer: {error}", report.endpoint)),
        }
    }
    let leaders: BTreeSet<u64> = statuses.iter().map(|s| s.leader_id).collect();
    if leaders.len() != 1 || leaders.contains(&0) {
        return Err(format!(
            "no single leader yet (endpoints name {} leader(s))",
            leaders.iter().filter(|l| **l != 0).count()
        ));
    }
    let names: BTreeSet<String> = survey.members.iter().map(|m| m.name.clone()).collect();
    let wanted: BTreeSet<String> = expected.iter().cloned().collect();
    if names != wanted {
        return Err(format!(
            "members are [{}], expected [{}]",
            names.into_iter().collect::<Vec<_>>().join(", "),
            expected.join(", ")
        ));
    }
    let revision = statuses.iter().map(|s| s.revision).min().unwrap_or(0);
    if revision < min_revision {
        return Err(format!(
            "revision {revision} is below the expected {min_revision}"
        ));
    }
    let leader = survey
        .members
        .iter()
        .find(|m| m.is_leader)
        .map(|m| m.name.clone())
        .unwrap_or_default();
    Ok(HealthyCluster {
        leader,
        revision,
        members: expected.to_vec(),
    })
}

/// Polls the cluster until [`judge_health`] is satisfied or `timeout` passes; the error says
/// what was still wrong.
pub async fn wait_healthy(
    source: &EtcdSource,
    expected: &[String],
    min_revision: i64,
    timeout: Duration,
    mut on_progress: impl FnMut(&str),
    cancel: &CancellationToken,
) -> Result<HealthyCluster, PromoteError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last;
    loop {
        last = match source.survey(cancel).await {
            Ok(survey) => match judge_health(&survey, expected, min_revision) {
                Ok(healthy) => return Ok(healthy),
                Err(why) => why,
            },
            Err(error) => error.to_string(),
        };
        on_progress(&last);
        if tokio::time::Instant::now() >= deadline {
            return Err(PromoteError::Health(format!(
                "not healthy after {}: {last}",
                humantime::format_duration(timeout)
            )));
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(PromoteError::Cancelled),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Waits until each of `kube`'s control-plane API servers (its `control_plane_servers`, else its
/// own server) answers `GET /readyz` and then a real list, one after the other, within
/// `timeout` in all; the error names the server and what it last answered. Returns the servers.
pub async fn wait_api_ready(
    kube: &KubeClient,
    timeout: Duration,
    mut on_progress: impl FnMut(&str),
    cancel: &CancellationToken,
) -> Result<Vec<String>, PromoteError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let servers = kube.control_plane()?;
    for server in &servers {
        loop {
            let error = match server.readyz().await {
                Ok(()) => match server.probe_list().await {
                    Ok(()) => break,
                    Err(error) => error,
                },
                Err(error) => error,
            };
            let why = format!("kube-apiserver {}: {error}", server.server());
            on_progress(&why);
            if tokio::time::Instant::now() >= deadline {
                return Err(PromoteError::Health(format!(
                    "not ready after {}: {why}",
                    humantime::format_duration(timeout)
                )));
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(PromoteError::Cancelled),
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
    Ok(servers.iter().map(KubeClient::server).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_dr_core::EtcdMember;
    use etcd_dr_scheduler::{EndpointReport, EndpointStatus};

    fn status(endpoint: &str, member: u64, leader: u64, revision: i64) -> EndpointReport {
        EndpointReport {
            endpoint: endpoint.into(),
            status: Ok(EndpointStatus {
                endpoint: endpoint.into(),
                cluster_id: 1,
                member_id: member,
                leader_id: leader,
                version: "3.5.16".into(),
                db_size: 1,
                revision,
                raft_index: 1,
                raft_term: 1,
                is_learner: false,
                errors: vec![],
            }),
        }
    }

    fn member(name: &str, leader: bool) -> EtcdMember {
        EtcdMember {
            id: name.into(),
            name: name.into(),
            peer_urls: vec![],
            client_urls: vec![],
            is_leader: leader,
            is_learner: false,
            status: None,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn healthy_when_everything_agrees() {
        let survey = ClusterSurvey {
            cluster_id: 1,
            endpoints: vec![
                status("a", 1, 2, 1_000_000_100),
                status("b", 2, 2, 1_000_000_100),
            ],
            members: vec![member("cp1", false), member("cp2", true)],
        };
        let healthy = judge_health(&survey, &names(&["cp1", "cp2"]), 1_000_000_000).unwrap();
        assert_eq!(healthy.leader, "cp2");
        assert_eq!(healthy.revision, 1_000_000_100);
    }

    #[test]
    fn says_what_is_still_wrong() {
        let mut survey = ClusterSurvey {
            cluster_id: 1,
            endpoints: vec![status("a", 1, 2, 10), status("b", 2, 0, 10)],
            members: vec![member("cp1", false), member("cp2", true)],
        };
        let expected = names(&["cp1", "cp2"]);
        assert!(judge_health(&survey, &expected, 5)
            .unwrap_err()
            .starts_with("no single leader"));
        survey.endpoints[1] = status("b", 2, 2, 10);
        assert_eq!(
            judge_health(&survey, &expected, 50).unwrap_err(),
            "revision 10 is below the expected 50"
        );
        assert_eq!(
            judge_health(&survey, &names(&["cp1", "cp3"]), 5).unwrap_err(),
            "members are [cp1, cp2], expected [cp1, cp3]"
        );
        survey.endpoints[0].status = Err("connection refused".into());
        assert_eq!(
            judge_health(&survey, &expected, 5).unwrap_err(),
            "a does not answer: connection refused"
        );
    }
}
