//! Children started on a node get the allow-listed environment of
//! [`etcd_dr_core::allowed_child_environment`].

use tokio::process::Command;

/// Clears `command`'s environment down to the allowed variables of this process.
pub fn restrict_environment(command: &mut Command) {
    command.env_clear();
    command.envs(etcd_dr_core::allowed_child_environment());
}
