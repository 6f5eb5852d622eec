//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use porthole_conformance::{compare_shape, connect, replace_in_strings, Agent, ShapeOpts};
use serde_json::{json, Value};

/// Panic unless `q` (qemu-ga) and `p` (porthole) agree under `opts`.
pub fn assert_same(what: &str, q: &Value, p: &Value, opts: &ShapeOpts) {
    if let Some(msg) = differ(what, q, p, opts) {
        panic!("{msg}");
    }
}

/// `Some(description)` when `q` (qemu-ga) and `p` (porthole) disagree under `opts`.
pub fn differ(what: &str, q: &Value, p: &Value, opts: &ShapeOpts) -> Option<String> {
    let diffs = compare_shape(q, p, opts);
    (!diffs.is_empty()).then(|| {
        format!("{what}: porthole differs from qemu-ga\n  qemu-ga : {q}\n  porthole: {p}\n  diffs: {diffs:#?}")
    })
}

/// Collects every divergence of a test so one run lists them all, then fails once.
#[derive(Default)]
pub struct Divergences(Vec<String>);

impl Divergences {
    pub fn same(&mut self, what: &str, q: &Value, p: &Value, opts: &ShapeOpts) {
        self.0.extend(differ(what, q, p, opts));
    }
    pub fn same_error(&mut self, what: &str, q: &Value, p: &Value) {
        if porthole_conformance::error_of(q).is_none() {
            self.0.push(format!("{what}: qemu-ga did not fail: {q}"));
        } else {
            self.same(what, q, p, &ShapeOpts::exact());
        }
    }
    pub fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} divergence(s):\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

/// Same error class and text.
pub fn assert_same_error(what: &str, q: &Value, p: &Value) {
    let qe = porthole_conformance::error_of(q);
    let pe = porthole_conformance::error_of(p);
    assert!(qe.is_some(), "{what}: qemu-ga did not fail: {q}");
    assert_eq!(
        qe, pe,
        "{what}: error differs\n  qemu-ga : {q}\n  porthole: {p}"
    );
}

/// One step of a scripted session: `$S` in strings is the agent's scratch dir, the string
/// `"$H"` is the handle returned by the last successful guest-file-open.
pub struct Step(pub &'static str, pub Value);

fn substitute(v: &mut Value, scratch: &str, handle: &Value) {
    match v {
        Value::String(s) if s == "$H" => *v = handle.clone(),
        Value::String(s) => *s = s.replace("$S", scratch),
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, scratch, handle)),
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, scratch, handle)),
        _ => {}
    }
}

/// Run `steps` on one connection; replies have the scratch path replaced by `$S`.
pub fn run_script(agent: &Agent, steps: &[Step]) -> Vec<Value> {
    let scratch = agent.scratch().display().to_string();
    let mut conn = connect(agent);
    let mut handle = Value::Null;
    steps
        .iter()
        .map(|Step(cmd, args)| {
            let mut args = args.clone();
            substitute(&mut args, &scratch, &handle);
            let mut reply = conn
                .execute(cmd, args)
                .unwrap_or_else(|e| panic!("{} {cmd}: {e}", agent.kind.label()));
            if *cmd == "guest-file-open" {
                if let Some(h) = reply.get("return") {
                    handle = h.clone();
                }
            }
            replace_in_strings(&mut reply, &scratch, "$S");
            reply
        })
        .collect()
}

/// Compare two script transcripts step by step with `opts`.
pub fn assert_same_transcript(steps: &[Step], q: &[Value], p: &[Value], opts: &ShapeOpts) {
    let mut d = Divergences::default();
    for (i, (Step(cmd, args), (qv, pv))) in steps.iter().zip(q.iter().zip(p)).enumerate() {
        d.same(&format!("step {i}: {cmd} {args}"), qv, pv, opts);
    }
    d.finish();
}

/// Run guest-exec with `args`; if it succeeds poll guest-exec-status until exited and return
/// (exec reply, final status reply with the pid removed).
pub fn exec_and_wait(agent: &Agent, args: Value) -> (Value, Option<Value>) {
    let mut conn = connect(agent);
    conn.set_timeout(Duration::from_secs(60));
    let reply = conn.execute("guest-exec", args).expect("guest-exec reply");
    let Some(pid) = reply.pointer("/return/pid").cloned() else {
        return (reply, None);
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = conn
            .execute("guest-exec-status", json!({ "pid": pid }))
            .expect("guest-exec-status reply");
        if st.pointer("/return/exited") != Some(&Value::Bool(false)) {
            let mut exec = reply;
            exec["return"]["pid"] = json!("PID");
            return (exec, Some(st));
        }
        assert!(Instant::now() < deadline, "{} never exited", pid);
        std::thread::sleep(Duration::from_millis(5));
    }
}
