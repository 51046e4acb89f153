//! `etcd-dr run`: the daemon. The HTTP API, the store check and the role's loop (primary:
//! snapshots on the schedule; secondary: poll, verify, pre-stage) until SIGTERM or SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use etcd_dr_control::{ApiToken, AppState, HttpConfig, Metrics, Role, TOKEN_ENV};

use super::{manifest_trust, open_store, shutdown_token, snapshot_context};
use crate::daemon::promote::Promotions;
use crate::daemon::{
    fencing, primary, progress_log, replication, replication_follow, secondary, store_check,
    systemd, DaemonHandle, DaemonState,
};
use crate::settings::Settings;

/// How long an in-flight snapshot gets to abort its upload after a shutdown signal (beyond
/// `upload.shutdown_grace`), and open HTTP requests to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(settings: &Settings, _args: Args) -> anyhow::Result<()> {
    let cancel = shutdown_token();
    // The one registry of the process.
    let metrics = Metrics::new(settings.role)?;
    if let Some(path) = &settings.http.token_file {
        settings.check_secret_file(path, "the API token file (http.token_file)")?;
    }
    let token = load_token(&settings.http)?;
    let promote_token = match &settings.http.promote_token_file {
        Some(path) => {
            settings.check_secret_file(path, "the promote token file (http.promote_token_file)")?;
            let token = ApiToken::from_file(path).context("http.promote_token_file")?;
            Some(token)
        }
        None => None,
    };
    let (store, layout) = open_store(settings)?;
    etcd_dr_transport::probe_create_only(&store, &layout, &cancel)
        .await
        .with_context(|| format!("store start-up probe of {}", settings.store.describe()))?;
    let secondary_config = settings.secondary();
    let (snapshots, schedule) = match settings.role {
        Role::Primary => {
            let schedule = settings.schedule.schedule().ok_or_else(|| {
                anyhow::anyhow!("schedule: set schedule.interval or schedule.cron")
            })?;
            metrics.set_expected_interval(primary::expected_interval(&schedule));
            (Some(snapshot_context(settings)?), Some(schedule))
        }
        Role::Secondary => {
            metrics.set_expected_interval(secondary_config.expected_interval);
            (None, None)
        }
    };
    let trust = match &snapshots {
        Some(context) => context.trust.clone(),
        None => manifest_trust(settings)?,
    };
    metrics.set_unsigned_allowed(trust.allows_unsigned());
    metrics.set_replication_enabled(settings.replication.enabled);
    let mut state = DaemonState::new(
        settings.clone(),
        metrics.clone(),
        store,
        layout,
        trust,
        snapshots,
        cancel.clone(),
    );
    if settings.promote.is_some() {
        state.promotions = Promotions::new(super::promote::promoter(settings)?);
    }
    let state = Arc::new(state);
    if settings.role == Role::Primary {
        // Before the first scheduled snapshot: a fenced primary must not ship even once.
        fencing::check_once(&state).await;
    }
    if settings.role == Role::Secondary {
        secondary::prepare(&state, &secondary_config)?;
    }

    let listener = etcd_dr_control::bind(settings.http.listen).await?;
    let listen = listener
        .local_addr()
        .context("http.listen: the bound address")?;
    let router = etcd_dr_control::router(AppState {
        daemon: Arc::new(DaemonHandle(state.clone())),
        metrics,
        token,
        promote_token,
        readiness_grace: settings.http.readiness_grace,
    });
    if !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "http.listen is not a loopback address: the API (status, snapshot list, metrics, and with a token snapshots and promotion) is reachable from the network; put it behind a firewall or a TLS proxy"
        );
    }
    let server = tokio::spawn(etcd_dr_control::serve(
        listener,
        router,
        etcd_dr_control::ServeLimits::from(&settings.http),
        cancel.clone(),
    ));

    // Start-up knowledge, bounded so that systemd hears READY in time even with the store away.
    store_check::check_once(&state).await;
    if settings.role == Role::Primary
        && tokio::time::timeout(
            settings.http.store_check_timeout,
            primary::load_baseline(&state),
        )
        .await
        .is_err()
    {
        tracing::warn!("the store did not list in time at start-up; status starts empty");
    }
    let checker = {
        let state = state.clone();
        tokio::spawn(async move { store_check::run(&state).await })
    };
    let progress_log = tokio::spawn(progress_log::run(state.clone()));
    let fence_watch = (settings.role == Role::Primary).then(|| {
        let state = state.clone();
        let interval = settings.fencing.poll_interval;
        tokio::spawn(async move { fencing::run(&state, interval).await })
    });
    let replication_task = settings.replication.enabled.then(|| {
        let state = state.clone();
        tokio::spawn(async move {
            let result = match state.settings.role {
                Role::Primary => replication::run(state.clone()).await,
                Role::Secondary => replication_follow::run(&state).await,
            };
            if let Err(error) = result {
                tracing::error!(error = %format!("{error:#}"), "continuous replication stopped");
                state.cycle_failed(format!("continuous replication stopped: {error:#}"));
            }
        })
    });
    tracing::info!(
        role = settings.role.as_str(),
        cluster = %settings.cluster,
        store = %settings.store.describe(),
        schedule = %schedule.as_ref().map_or_else(
            || format!("poll every {}", humantime::format_duration(secondary_config.poll_interval)),
            |s| s.describe()
        ),
        %listen,
        "etcd-dr daemon started"
    );
    systemd::ready(&format!(
        "{} of cluster {}, API on {listen}",
        settings.role.as_str(),
        settings.cluster
    ));
    if let Some(period) = systemd::watchdog_interval() {
        tokio::spawn(systemd::run_watchdog(period, cancel.clone()));
    }
    let role_loop = async {
        match &schedule {
            Some(schedule) => primary::run(&state, schedule).await,
            None => secondary::run(&state, &secondary_config).await,
        }
        // A snapshot started through the API may still be aborting its upload.
        let _ = state.snapshot_lock.lock().await;
    };
    tokio::pin!(role_loop);
    let finished = tokio::select! {
        _ = &mut role_loop => true,
        _ = cancel.cancelled() => false,
    };
    // systemd hears STOPPING at once, while an upload in flight is still being aborted.
    systemd::stopping();
    // An upload that is completing gets `upload.shutdown_grace`, then its abort some time.
    let snapshot_grace = settings.upload.shutdown_grace + SHUTDOWN_GRACE;
    if !finished
        && tokio::time::timeout(snapshot_grace, role_loop)
            .await
            .is_err()
    {
        tracing::warn!(
            "the running snapshot did not stop within {snapshot_grace:?}; exiting anyway"
        );
    }
    cancel.cancel();
    if let Some(task) = replication_task {
        // What was captured reaches the store within `replication.shutdown_grace`.
        let grace = settings.replication.shutdown_grace + Duration::from_secs(5);
        if tokio::time::timeout(grace, task).await.is_err() {
            tracing::warn!("the replication capture did not stop within {grace:?}; exiting anyway");
        }
    }
    let _ = checker.await;
    let _ = progress_log.await;
    if let Some(fence_watch) = fence_watch {
        let _ = fence_watch.await;
    }
    // A promotion cut short by the shutdown rolls its nodes back before the process exits.
    state.promotions.wait().await;
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::error!(%error, "HTTP server failed"),
        Ok(Err(error)) => tracing::error!(%error, "HTTP server task failed"),
        Err(_) => {
            tracing::warn!("HTTP requests still open after {SHUTDOWN_GRACE:?}; exiting anyway")
        }
    }
    tracing::info!("etcd-dr daemon stopped");
    Ok(())
}

/// The API token from `http.token_file`, else `ETCD_DR_API_TOKEN`, else none (mutating
/// endpoints then answer 403).
fn load_token(http: &HttpConfig) -> anyhow::Result<Option<ApiToken>> {
    if let Some(path) = &http.token_file {
        return Ok(Some(ApiToken::from_file(path)?));
    }
    match std::env::var(TOKEN_ENV) {
        Ok(text) => Ok(Some(ApiToken::new(&text, TOKEN_ENV)?)),
        Err(_) => {
            tracing::warn!(
                "no API token (http.token_file or {TOKEN_ENV}): POST endpoints are disabled"
            );
            Ok(None)
        }
    }
}
