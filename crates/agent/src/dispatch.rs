//! Command registry and dispatch: name → policy gate → argument validation → typed handler →
//! audit line.
//!
//! Every request of every dialect and channel goes through [`Dispatcher::execute`], so the policy
//! gate and the audit log see everything. A JSON-RPC method of the KVM Manager API is registered
//! with the QGA commands it rides on ([`Registry::add_method`]): it is refused whenever one of
//! them is disabled, and it is not listed by `guest-info` (qemu-ga clients never see it).

use crate::agent::Agent;
use crate::policy::audit::{self, Caller};
use porthole_proto::commands::{CommandInfo, CommandSpec};
use porthole_proto::schema::validate;
use porthole_proto::CommandError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Payload, CommandError>> + Send>>;
type Handler = Box<dyn Fn(Arc<Agent>, Map<String, Value>) -> HandlerFuture + Send + Sync>;

/// What a handler returns.
#[derive(Debug)]
pub enum Payload {
    Json(Value),
    /// A reply whose bulk is raw bytes, base64-encoded while they are written (see [`Streamed`]).
    Streamed(Streamed),
}

/// A reply object with one string member, `field`, held as raw bytes. The session writes the
/// base64 text in small pieces straight to the channel, so a 48 MiB guest-file-read costs its
/// 48 MiB of data and no more: never the 64 MiB of base64, let alone a serialized copy of it.
#[derive(Debug)]
pub struct Streamed {
    /// The reply object, without `field`.
    pub value: Value,
    pub field: &'static str,
    pub bytes: Vec<u8>,
}

impl Payload {
    /// The whole reply as one JSON value (base64 encoded in memory), for paths that cannot
    /// stream, such as JSON-RPC batches.
    pub fn into_value(self) -> Value {
        match self {
            Payload::Json(value) => value,
            Payload::Streamed(Streamed {
                mut value,
                field,
                bytes,
            }) => {
                use base64::Engine as _;
                if let Some(object) = value.as_object_mut() {
                    let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
                    object.insert(field.to_string(), Value::String(text));
                }
                value
            }
        }
    }
}

struct Entry {
    spec: CommandSpec,
    handler: Handler,
    /// QGA commands this one is also gated as.
    rides_on: &'static [&'static str],
    /// Listed by `guest-info`.
    listed: bool,
}

/// The commands an agent serves, in the order `guest-info` lists them.
#[derive(Default)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl Registry {
    /// Registers `handler` for `spec`; its arguments arrive validated and deserialized as `A`.
    pub fn add<A, F, Fut>(&mut self, spec: CommandSpec, handler: F)
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(Arc<Agent>, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, CommandError>> + Send + 'static,
    {
        self.add_payload(spec, move |agent, args| {
            let reply = handler(agent, args);
            async move { reply.await.map(Payload::Json) }
        });
    }

    /// Registers a handler that may stream its reply ([`Payload::Streamed`]).
    pub fn add_payload<A, F, Fut>(&mut self, spec: CommandSpec, handler: F)
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(Arc<Agent>, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Payload, CommandError>> + Send + 'static,
    {
        let handler = move |agent: Arc<Agent>, args: Map<String, Value>| -> HandlerFuture {
            match serde_json::from_value::<A>(Value::Object(args)) {
                Ok(args) => Box::pin(handler(agent, args)),
                // Validation already passed, so this is a schema/struct mismatch: a bug.
                Err(e) => Box::pin(async move {
                    Err(CommandError::internal(format!("argument decoding: {e}")))
                }),
            }
        };
        self.entries.push(Entry {
            spec,
            handler: Box::new(handler),
            rides_on: &[],
            listed: true,
        });
    }

    /// Registers a JSON-RPC method (KVM Manager API) that runs what the QGA commands `rides_on`
    /// run: gated as itself and as each of them, and not listed by `guest-info`.
    pub fn add_method<A, F, Fut>(
        &mut self,
        spec: CommandSpec,
        rides_on: &'static [&'static str],
        handler: F,
    ) where
        A: DeserializeOwned + Send + 'static,
        F: Fn(Arc<Agent>, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, CommandError>> + Send + 'static,
    {
        self.add(spec, handler);
        if let Some(entry) = self.entries.last_mut() {
            entry.rides_on = rides_on;
            entry.listed = false;
        }
    }

    fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.spec.name == name)
    }

    pub fn specs(&self) -> impl Iterator<Item = &CommandSpec> {
        self.entries.iter().map(|e| &e.spec)
    }

    /// The JSON-RPC methods and the QGA commands each rides on.
    pub fn methods(&self) -> impl Iterator<Item = (&'static str, &'static [&'static str])> + '_ {
        self.entries
            .iter()
            .filter(|e| !e.listed)
            .map(|e| (e.spec.name, e.rides_on))
    }

    /// `guest-info`'s `supported_commands` under `enabled`.
    pub fn command_list(&self, enabled: impl Fn(&str) -> bool) -> Vec<CommandInfo> {
        self.entries
            .iter()
            .filter(|e| e.listed)
            .map(|e| &e.spec)
            .map(|spec| CommandInfo {
                name: spec.name.to_string(),
                enabled: enabled(spec.name),
                success_response: spec.success_response,
            })
            .collect()
    }
}

/// What a request produced.
#[derive(Debug)]
pub enum Outcome {
    Reply(Result<Payload, CommandError>),
    /// A command without a success response succeeded: nothing is sent.
    Silent,
}

pub struct Dispatcher {
    registry: Registry,
    agent: Arc<Agent>,
}

impl Dispatcher {
    pub fn new(registry: Registry, agent: Arc<Agent>) -> Self {
        Self { registry, agent }
    }

    pub fn agent(&self) -> &Arc<Agent> {
        &self.agent
    }

    /// Runs one request: lookup, policy gate, validation, handler, audit.
    pub async fn execute(
        &self,
        caller: &Caller,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Outcome {
        let Some(entry) = self.registry.find(name) else {
            return Outcome::Reply(Err(CommandError::command_not_found(name)));
        };
        // The summary is taken before the handler consumes the arguments.
        let audited =
            audit::is_state_changing(name, &arguments).then(|| audit::summarize(&arguments));
        let record = |result: Result<(), &CommandError>| {
            if let Some(summary) = &audited {
                let outcome = audit::outcome(&result);
                self.agent.audit.record(name, summary, caller, &outcome);
            }
        };
        if let Err(refusal) = self.agent.policy.check_command_as(name, entry.rides_on) {
            record(Err(&refusal));
            return Outcome::Reply(Err(refusal));
        }
        // While frozen only the freeze-safe commands run (qemu-ga's rule); the gate lives with
        // the freeze state it reads.
        if let Err(refusal) = crate::commands::freeze::refuse_while_frozen(&self.agent, name) {
            record(Err(&refusal));
            return Outcome::Reply(Err(refusal));
        }
        if let Err(invalid) = validate(&arguments, entry.spec.params) {
            record(Err(&invalid));
            return Outcome::Reply(Err(invalid));
        }
        let result = (entry.handler)(self.agent.clone(), arguments).await;
        record(result.as_ref().map(|_| ()));
        match result {
            Ok(_) if !entry.spec.success_response => Outcome::Silent,
            other => Outcome::Reply(other),
        }
    }
}
