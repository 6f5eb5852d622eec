//! The state one agent process shares across all its channels and sessions.

use crate::commands::exec::ExecTable;
use crate::commands::file::FileTable;
use crate::commands::freeze::FreezeState;
use crate::commands::px_exec::PxExecTable;
use crate::config::Config;
use crate::policy::audit::Audit;
use crate::policy::Policy;
use crate::state::StateDir;
use porthole_proto::commands::CommandInfo;

pub struct Agent {
    pub config: Config,
    pub policy: Policy,
    /// `guest-info`'s command list, fixed at start-up.
    pub commands: Vec<CommandInfo>,
    /// Open guest-file handles: global to the agent, they outlive the connection that opened them.
    pub files: FileTable,
    /// Processes started by guest-exec, until their exit status is collected.
    pub execs: ExecTable,
    /// Processes started by guest-porthole-exec, until their last output is collected.
    pub px_execs: PxExecTable,
    /// Filesystem freeze state (frozen flag, auto-thaw timer).
    pub freeze: FreezeState,
    /// The audit log of state-changing commands.
    pub audit: Audit,
}

impl Agent {
    pub fn new(
        config: Config,
        policy: Policy,
        commands: Vec<CommandInfo>,
        state: StateDir,
    ) -> Self {
        let freeze = FreezeState::new(&config.statedir);
        let audit = Audit::new(policy.audit_log.clone(), state.path());
        Self {
            freeze,
            audit,
            config,
            policy,
            commands,
            files: FileTable::new(state),
            execs: ExecTable::default(),
            px_execs: PxExecTable::default(),
        }
    }
}
