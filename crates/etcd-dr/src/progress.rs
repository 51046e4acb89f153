//! Progress of long work for a person at a terminal: a bar (bytes, rate, ETA) that follows a
//! transfer's [`ShipProgress`] or a restore to a revision's [`ReplayProgress`], or a spinner with what is running (promote, restore) that turns
//! into a bar while the snapshot is copied. Drawn on stderr, and only
//! when both stdout and stderr are terminals and `--json` was not asked for: scripts, pipes,
//! logs and CI see the final summary alone.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_dr_core::TransferProgress;
use etcd_dr_replication::{ReplayProgress, ReplayStage};
use etcd_dr_transport::{CountingWriter, ShipProgress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a bar reads its counters and redraws.
const REFRESH: Duration = Duration::from_millis(200);

/// Whether progress is drawn: only for a person watching a terminal.
pub fn shown(json: bool, stdout_is_terminal: bool, stderr_is_terminal: bool) -> bool {
    !json && stdout_is_terminal && stderr_is_terminal
}

/// [`shown`] for this process's stdout and stderr.
pub fn on_terminal(json: bool) -> bool {
    shown(
        json,
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    )
}

/// A bar on stderr redrawn by `update` every [`REFRESH`] until dropped, then cleared (the
/// summary printed next says how it went). Hidden, it draws nothing and runs nothing.
struct FollowingBar {
    bar: ProgressBar,
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl FollowingBar {
    /// Needs a Tokio runtime when visible.
    fn start(
        visible: bool,
        style: ProgressStyle,
        message: String,
        mut update: impl FnMut(&ProgressBar) + Send + 'static,
    ) -> Self {
        if !visible {
            return Self {
                bar: ProgressBar::hidden(),
                follower: None,
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(style);
        bar.set_message(message);
        bar.tick();
        let follower = {
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(REFRESH);
                loop {
                    ticks.tick().await;
                    update(&bar);
                }
            })
        };
        Self {
            bar,
            follower: Some(follower),
        }
    }
}

impl Drop for FollowingBar {
    fn drop(&mut self) {
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        self.bar.finish_and_clear();
    }
}

/// A bar on stderr that follows the raw byte counter of a [`ShipProgress`] until dropped: bytes
/// so far, of the expected total when known (else a spinner), rate and ETA.
pub struct TransferBar {
    /// Held for its drop: it stops following and clears the bar.
    _shown: FollowingBar,
}

impl TransferBar {
    /// Follows `progress` under the label `what` (e.g. `fetch 20261201T…`); draws nothing
    /// unless `visible`. Needs a Tokio runtime when visible.
    pub fn follow(what: impl Into<String>, progress: Arc<ShipProgress>, visible: bool) -> Self {
        let mut known_total = false;
        let shown = FollowingBar::start(visible, spinner_style(), what.into(), move |bar| {
            let done = progress.raw_bytes.load(Ordering::Relaxed);
            let expected = progress.expected_raw_bytes.load(Ordering::Relaxed);
            if expected > 0 && !known_total {
                bar.set_style(bar_style());
                known_total = true;
            }
            if known_total {
                // etcd's reported size is close, not exact: never a bar past its end.
                bar.set_length(expected.max(done));
            }
            bar.set_position(done);
        });
        Self { _shown: shown }
    }

    /// A bar for a transfer of `total` plain bytes into `sink`, and the sink that counts them.
    pub fn for_sink<W>(
        what: impl Into<String>,
        total: u64,
        sink: W,
        visible: bool,
    ) -> (Self, CountingWriter<W>) {
        let progress = Arc::new(ShipProgress::default());
        progress.expected_raw_bytes.store(total, Ordering::Relaxed);
        let bar = Self::follow(what, progress.clone(), visible);
        (bar, CountingWriter::new(sink, progress))
    }
}

/// A bar on stderr that follows a restore to a revision until dropped: the base snapshot's
/// download (bytes, rate, ETA), then the revisions replayed onto it (count, rate, ETA).
pub struct ReplayBar {
    /// Held for its drop: it stops following and clears the bar.
    _shown: FollowingBar,
}

impl ReplayBar {
    /// Follows `progress` under the label `what`; draws nothing unless `visible`. Needs a
    /// Tokio runtime when visible.
    pub fn follow(what: impl Into<String>, progress: Arc<ReplayProgress>, visible: bool) -> Self {
        let what = what.into();
        let mut replaying = false;
        let shown = FollowingBar::start(
            visible,
            bar_style(),
            format!("{what}: base snapshot"),
            move |bar| match progress.stage() {
                ReplayStage::Downloading { done, expected } => {
                    bar.set_length(expected.max(done));
                    bar.set_position(done);
                }
                ReplayStage::Replaying { done, total } => {
                    if !replaying {
                        replaying = true;
                        bar.set_style(revisions_style());
                        bar.set_message(format!("{what}: replaying"));
                        bar.set_position(0);
                        bar.reset_eta();
                    }
                    bar.set_length(total.max(done));
                    bar.set_position(done);
                }
            },
        );
        Self { _shown: shown }
    }
}

fn revisions_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{msg} [{bar:30}] {human_pos}/{human_len} revisions {per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn activity_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg} {binary_bytes} {binary_bytes_per_sec} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A spinner on stderr with a message of what is running and for how long (promote and
/// restore, whose steps run on other machines); lines printed through [`Self::println`] are
/// written above it. Draws nothing unless visible.
pub struct ActivitySpinner {
    bar: ProgressBar,
    /// True while it shows a copy as a bar.
    copying: AtomicBool,
}

impl ActivitySpinner {
    /// A spinner, hidden unless `visible`.
    pub fn new(visible: bool) -> Self {
        let copying = AtomicBool::new(false);
        if !visible {
            return Self {
                bar: ProgressBar::hidden(),
                copying,
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(activity_style());
        bar.enable_steady_tick(REFRESH);
        Self { bar, copying }
    }

    /// Shows a copy of the snapshot (bytes of the total, rate, ETA) as a bar under the
    /// activity's message while `copy` is given; the plain spinner again once it is not.
    pub fn set_copy(&self, copy: Option<TransferProgress>) {
        match copy {
            Some(copy) => {
                if !self.copying.swap(true, Ordering::Relaxed) {
                    self.bar.set_position(0);
                    self.bar.reset_eta();
                    self.bar.set_style(bar_style());
                }
                self.bar.set_length(copy.total_bytes.max(copy.done_bytes));
                self.bar.set_position(copy.done_bytes);
            }
            None => {
                if self.copying.swap(false, Ordering::Relaxed) {
                    self.bar.set_style(activity_style());
                }
            }
        }
    }

    /// What is running now; `None` hides the spinner's line until the next message.
    pub fn set_activity(&self, activity: Option<String>) {
        match activity {
            Some(text) if text != self.bar.message() => {
                self.bar.reset_elapsed();
                self.bar.set_message(text);
            }
            Some(_) => {}
            None => self.bar.set_message(""),
        }
    }

    /// Runs `print` (which writes whole lines to stdout or stderr) with the spinner out of
    /// the way.
    pub fn println(&self, print: impl FnOnce()) {
        self.bar.suspend(print);
    }
}

impl Drop for ActivitySpinner {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn progress_is_drawn_only_for_a_terminal_without_json() {
        assert!(shown(false, true, true));
        assert!(!shown(true, true, true), "--json");
        assert!(!shown(false, false, true), "stdout piped or redirected");
        assert!(!shown(false, true, false), "stderr redirected");
        assert!(!shown(false, false, false));
    }

    #[tokio::test]
    async fn a_hidden_bar_follows_nothing_and_draws_nothing() {
        let bar = TransferBar::follow("fetch", Arc::new(ShipProgress::default()), false);
        assert!(bar._shown.bar.is_hidden());
        assert!(bar._shown.follower.is_none());
        // Under `cargo test` stderr is captured, not a terminal: on_terminal says so.
        if !std::io::stderr().is_terminal() {
            assert!(!on_terminal(false));
        }
    }

    #[test]
    fn a_hidden_spinner_follows_copies_without_drawing() {
        let spinner = ActivitySpinner::new(false);
        assert!(spinner.bar.is_hidden());
        let copy = TransferProgress {
            done_bytes: 10,
            total_bytes: 100,
            started_at: chrono::Utc::now(),
        };
        spinner.set_copy(Some(copy));
        assert!(spinner.copying.load(Ordering::Relaxed));
        assert_eq!(spinner.bar.position(), 10);
        assert_eq!(spinner.bar.length(), Some(100));
        spinner.set_copy(None);
        assert!(!spinner.copying.load(Ordering::Relaxed));
    }

    #[test]
    fn the_counting_writer_counts_only_what_the_sink_took() {
        let progress = Arc::new(ShipProgress::default());
        let mut counting = CountingWriter::new(Vec::new(), progress.clone());
        counting.write_all(b"hello world").unwrap();
        assert_eq!(progress.raw_bytes.load(Ordering::Relaxed), 11);
        assert_eq!(counting.into_inner(), b"hello world");

        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut failing = CountingWriter::new(Full, progress.clone());
        assert!(failing.write_all(b"x").is_err());
        assert_eq!(progress.raw_bytes.load(Ordering::Relaxed), 11);
    }
}
