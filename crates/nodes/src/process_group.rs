//! Killing a command's whole process group.

/// Kills a command's process group when asked, or when dropped while still armed (a future
/// dropped mid-way).
pub(crate) struct GroupKiller {
    pgid: Option<i32>,
}

impl GroupKiller {
    pub(crate) fn new(pid: Option<u32>) -> Self {
        Self {
            pgid: pid.and_then(|p| i32::try_from(p).ok()),
        }
    }

    pub(crate) fn kill(&self) {
        if let Some(pgid) = self.pgid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}
