//! Reaching the nodes of a cluster.
//!
//! - [`Executor`]: how a command reaches a node, with two implementations: [`LocalExecutor`]
//!   (this host) and [`SshExecutor`] (the system `ssh` client, `BatchMode=yes`).
//! - [`Node`] and [`NodeCommand`]: argv vectors run on a node, captured, with stdout streamed,
//!   or with stdin fed from a reader; timeouts and cancellation kill the command.
//! - [`shell_quote`]: the POSIX quoting that carries argv words through ssh unchanged.
//! - [`BundleConfig`]: the control-plane bundle (a tar of each node's Kubernetes files).
//! - [`check_node`]: host name, tools and free space of a node.

#![forbid(unsafe_code)]

mod bundle;
mod check;
mod child_env;
mod command;
mod config;
mod error;
mod executor;
mod node;
mod output_stream;
mod process_group;
mod quote;
mod unpack;

pub use bundle::{default_bundle_paths, BundleConfig, TarScanner, TarSummary, UnreachablePolicy};
pub use check::{check_node, FreeSpace, NodeReport};
pub use command::{CommandOutput, NodeCommand, MAX_CAPTURED_STDOUT, STDERR_TAIL};
pub use config::{is_valid_node_name, AccessConfig, AccessKind, NodesConfig};
pub use error::NodeError;
pub use etcd_dr_core::{is_allowed_in_child, CHILD_ENV_ALLOWED};
pub use executor::{Executor, LocalExecutor, SshExecutor};
pub use node::{Node, NodeRole};
pub use output_stream::OutputStream;
pub use quote::{shell_join, shell_quote};
pub use unpack::{unpack_bundle, unpack_bundle_from_sink, BundleSink, BundleUnpack, UnpackOptions};
