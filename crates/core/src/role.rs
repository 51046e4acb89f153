//! The two roles an etcd-dr instance plays.

use serde::{Deserialize, Serialize};

/// What this instance does: take snapshots, or watch them arrive in the other region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes snapshots of etcd and ships them to the store.
    #[default]
    Primary,
    /// Watches the same store from the other region, verifies each new snapshot, reports lag.
    Secondary,
}

impl Role {
    /// `primary` or `secondary`, as in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_as_in_the_config_file() {
        assert_eq!(
            serde_json::from_str::<Role>("\"secondary\"").unwrap(),
            Role::Secondary
        );
        assert_eq!(
            serde_json::to_string(&Role::Primary).unwrap(),
            "\"primary\""
        );
        assert!(serde_json::from_str::<Role>("\"tertiary\"").is_err());
    }
}
