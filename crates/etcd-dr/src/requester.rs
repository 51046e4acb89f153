//! Who asks for a restore or promotion: `user@host` of this etcd-dr, written into the promotion
//! marker, the restore lock and the record. The same for the command line and the daemon.

/// `user@host` of this etcd-dr (the user behind `sudo` when there is one).
pub fn requested_by() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "root".into());
    format!("{user}@{}", etcd_dr_scheduler::host_name())
}
