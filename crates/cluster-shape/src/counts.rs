//! Objects counted by resource and namespace, from their etcd keys alone.
//!
//! kube-apiserver's key layout under its prefix (`/registry` by default):
//! `<resource>/<namespace>/<name>` for namespaced built-in types, `<resource>/<name>` for
//! cluster-scoped ones, `<group>/<resource>/…` when the group has a dot (custom resources,
//! `apiextensions.k8s.io/customresourcedefinitions`, `apiregistration.k8s.io/apiservices`), and
//! `services/specs/…` / `services/endpoints/…` for Services and Endpoints.

use etcd_dr_core::ObjectCounts;

/// Counts `keys` (any order) by resource and namespace; keys outside `prefix` are counted as
/// `other_keys`.
pub fn count_objects<'a>(prefix: &str, keys: impl IntoIterator<Item = &'a [u8]>) -> ObjectCounts {
    let prefix = format!("{}/", prefix.trim_end_matches('/'));
    let mut counts = ObjectCounts::default();
    for key in keys {
        let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
            counts.other_keys += 1;
            continue;
        };
        counts.total += 1;
        let rest = String::from_utf8_lossy(rest);
        let (resource, namespace) = resource_and_namespace(&rest);
        let entry = counts.resources.entry(resource).or_default();
        entry.total += 1;
        if let Some(namespace) = namespace {
            *entry.namespaces.entry(namespace).or_default() += 1;
        }
    }
    counts
}

/// `rest` is a key without the prefix: `deployments/default/web` → (`deployments`, `default`).
fn resource_and_namespace(rest: &str) -> (String, Option<String>) {
    let segments: Vec<&str> = rest.split('/').collect();
    let grouped = segments.len() > 2
        && (segments[0].contains('.')
            || (segments[0] == "services" && matches!(segments[1], "specs" | "endpoints")));
    let (resource, path) = if grouped {
        (format!("{}/{}", segments[0], segments[1]), &segments[2..])
    } else {
        (segments[0].to_string(), &segments[1..])
    };
    let namespace = match path {
        [namespace, _name] => Some((*namespace).to_string()),
        _ => None,
    };
    (resource, namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_resource_and_namespace() {
        let keys: Vec<&[u8]> = vec![
            b"/registry/deployments/default/web",
            b"/registry/deployments/default/api",
            b"/registry/deployments/kube-system/coredns",
            b"/registry/namespaces/default",
            b"/registry/minions/cp1",
            b"/registry/services/specs/default/kubernetes",
            b"/registry/services/endpoints/default/kubernetes",
            b"/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com",
            b"/registry/example.com/widgets/team-a/w1",
            b"/registry/ranges/serviceips",
            b"/other/app/key",
        ];
        let counts = count_objects("/registry", keys);
        assert_eq!(counts.total, 10);
        assert_eq!(counts.other_keys, 1);
        let deployments = &counts.resources["deployments"];
        assert_eq!(deployments.total, 3);
        assert_eq!(deployments.namespaces["default"], 2);
        assert_eq!(deployments.namespaces["kube-system"], 1);
        assert!(counts.resources["namespaces"].namespaces.is_empty());
        assert_eq!(counts.resources["minions"].total, 1);
        assert_eq!(counts.resources["services/specs"].namespaces["default"], 1);
        assert_eq!(counts.resources["services/endpoints"].total, 1);
        let crds = &counts.resources["apiextensions.k8s.io/customresourcedefinitions"];
        assert_eq!(crds.total, 1);
        assert!(crds.namespaces.is_empty());
        assert_eq!(
            counts.resources["example.com/widgets"].namespaces["team-a"],
            1
        );
        // `ranges/serviceips` is one key, not a namespaced object.
        assert!(counts.resources["ranges"].namespaces.is_empty());
    }

    #[test]
    fn a_custom_prefix_is_honoured() {
        let keys: Vec<&[u8]> = vec![b"/k8s/pods/default/p", b"/registry/pods/default/p"];
        let counts = count_objects("/k8s/", keys);
        assert_eq!(counts.total, 1);
        assert_eq!(counts.other_keys, 1);
    }
}
