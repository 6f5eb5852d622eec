//! porthole-agent: a guest agent that speaks the QEMU guest agent protocol (so libvirt, Proxmox,
//! OpenStack and virsh work unchanged), JSON-RPC 2.0, and porthole's extensions.
//!
//! Data flows top-down: a [`transport`] turns its medium (virtio-serial, isa-serial, unix socket,
//! vsock) into byte streams; a [`session`] frames and decodes them with `porthole-proto`; the
//! [`dispatch`]er passes each request through the [`policy`] gate and schema validation to a
//! handler in [`commands`], which works on the shared [`agent::Agent`] state.

pub mod agent;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dispatch;
pub mod policy;
pub mod session;
pub mod state;
pub mod transport;

use std::sync::Arc;

/// Why an agent could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
}

/// Builds the dispatcher for a configuration: registry, policy, shared state.
pub fn build(config: config::Config) -> Result<dispatch::Dispatcher, BuildError> {
    let policy = policy::Policy::from_config(&config)?;
    policy.prepare_spool();
    let state = state::StateDir::open(&config.statedir)?;
    let registry = commands::registry();
    let list = registry.command_list(|name| policy.command_enabled(name));
    let agent = Arc::new(agent::Agent::new(config, policy, list, state));
    commands::freeze::resume(&agent);
    Ok(dispatch::Dispatcher::new(registry, agent))
}
