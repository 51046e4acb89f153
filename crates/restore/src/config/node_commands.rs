//! Stopping and starting the control plane on a node: the default commands (kubeadm's: kubelet
//! and the static pods' containers), the force stop, and the check every command list passes.

use etcd_dr_core::ConfigProblems;

pub(super) fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}
/// kubeadm: kubelet runs the static pods; without it they keep running until their containers
/// are stopped.
pub(super) fn default_stop_commands() -> Vec<Vec<String>> {
    vec![
        words(&["systemctl", "stop", "kubelet"]),
        words(&[
            "sh",
            "-c",
            "for name in etcd kube-apiserver kube-controller-manager kube-scheduler; do \
             ids=$(crictl ps -q --name \"^$name\\$\"); \
             if [ -n \"$ids\" ]; then crictl stop $ids >/dev/null; fi; done",
        ]),
    ]
}
pub(super) fn default_etcd_stopped() -> Vec<String> {
    words(&["sh", "-c", "! pgrep -x etcd >/dev/null"])
}
/// The control-plane processes a force stop kills.
pub const CONTROL_PLANE_PROCESSES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
pub(super) fn default_force_stop() -> Vec<String> {
    words(&["sh", "-c", &force_stop_script(&CONTROL_PLANE_PROCESSES)])
}
/// SIGKILLs every process named `names`, then waits up to 5 s for all of them to be gone;
/// fails naming those that are not.
pub(super) fn force_stop_script(names: &[&str]) -> String {
    let names = names.join(" ");
    format!(
        "for name in {names}; do pkill -KILL -x \"$name\"; done; \
         for i in 1 2 3 4 5 6 7 8 9 10; do left=''; \
         for name in {names}; do pgrep -x \"$name\" >/dev/null && left=\"$left $name\"; done; \
         [ -z \"$left\" ] && exit 0; sleep 0.5; done; \
         echo \"still running after SIGKILL:$left\" >&2; exit 1"
    )
}
pub(super) fn default_start_commands() -> Vec<Vec<String>> {
    vec![words(&["systemctl", "start", "kubelet"])]
}

/// Reports `name` unless `words` is a non-empty argv with no empty word.
pub(super) fn check_argv(problems: &mut ConfigProblems, name: String, words: &[String]) {
    if words.is_empty() || words.iter().any(String::is_empty) {
        problems.push(
            name,
            "must be a non-empty list of words, e.g. [\"systemctl\", \"stop\", \"kubelet\"]",
        );
    }
}

#[cfg(test)]
mod tests {
    use etcd_dr_scheduler::EtcdConfig;

    use super::*;
    use crate::PromoteConfig;

    #[test]
    fn the_force_stop_kills_and_checks() {
        // A process of a name no one else uses (pgrep -x compares at most 15 characters).
        let dir = tempfile::tempdir().unwrap();
        let name = format!("edrfs{}", std::process::id() % 1_000_000);
        let program = dir.path().join(&name);
        std::fs::copy("/bin/sleep", &program).unwrap();
        let mut child = std::process::Command::new(&program)
            .arg("60")
            .spawn()
            .unwrap();
        // Reaped at once, as kubelet's container runtime would (pgrep sees zombies).
        let reaper = std::thread::spawn(move || child.wait().unwrap());
        let status = std::process::Command::new("sh")
            .args(["-c", &force_stop_script(&[&name, "edrfs-absent"])])
            .status()
            .unwrap();
        assert!(status.success());
        let waited = reaper.join().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&waited),
            Some(9)
        );
        let default = PromoteConfig::new(EtcdConfig::plain(vec![])).force_stop_command;
        for name in CONTROL_PLANE_PROCESSES {
            assert!(default[2].contains(name), "{default:?}");
        }
    }
}
