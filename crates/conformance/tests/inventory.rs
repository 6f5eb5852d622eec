//! Differential tests of the read-only inventory commands and the vcpu / memory-block setters.
//!
//! Deterministic values (names, addresses, mount points, types, device numbers, CPU and block
//! numbers) must be equal; counters that move between two reads (bytes, ticks, times) are
//! compared by shape. The setters are only sent requests that cannot change this machine:
//! unknown ids, re-onlining what is online, offlining the CPU that cannot go offline.

mod common;

use common::*;
use porthole_conformance::{connect, error_of, Pair, ShapeOpts};
use serde_json::{json, Value};

fn both(cmd: &'static str, args: Value) -> (Value, Value) {
    let pair = Pair::new();
    pair.each(|a| connect(a).execute(cmd, args.clone()).expect("reply"))
}

#[test]
fn network_interfaces_values_agree() {
    let (q, p) = both("guest-network-get-interfaces", Value::Null);
    assert!(q.get("return").is_some(), "qemu-ga failed: {q}");
    let opts = ShapeOpts::values(&[
        "/return/*/name",
        "/return/*/hardware-address",
        "/return/*/ip-addresses",
    ]);
    assert_same("guest-network-get-interfaces", &q, &p, &opts);
}

#[test]
fn vcpus_are_equal() {
    let (q, p) = both("guest-get-vcpus", Value::Null);
    assert!(q.get("return").is_some(), "qemu-ga failed: {q}");
    assert_same("guest-get-vcpus", &q, &p, &ShapeOpts::exact());
}

#[test]
fn cpustats_same_cpus_and_members() {
    let (q, p) = both("guest-get-cpustats", Value::Null);
    assert!(q.get("return").is_some(), "qemu-ga failed: {q}");
    let opts = ShapeOpts::values(&["/return/*/cpu", "/return/*/type"]);
    assert_same("guest-get-cpustats", &q, &p, &opts);
}

#[test]
fn diskstats_same_devices_and_members() {
    let (q, p) = both("guest-get-diskstats", Value::Null);
    assert!(q.get("return").is_some(), "qemu-ga failed: {q}");
    let opts = ShapeOpts::values(&["/return/*/name", "/return/*/major", "/return/*/minor"]);
    assert_same("guest-get-diskstats", &q, &p, &opts);
}

#[test]
fn fsinfo_and_disks_values_agree() {
    let pair = Pair::new();
    let (q, p) = pair.each(|a| {
        let mut c = connect(a);
        (
            c.execute("guest-get-fsinfo", Value::Null).expect("reply"),
            c.execute("guest-get-disks", Value::Null).expect("reply"),
        )
    });
    assert!(
        q.0.get("return").is_some(),
        "qemu-ga fsinfo failed: {}",
        q.0
    );
    // Usage moves while other tests write files: shape only for the byte counts.
    let opts = ShapeOpts::values(&[
        "/return/*/name",
        "/return/*/mountpoint",
        "/return/*/type",
        "/return/*/disk",
    ]);
    assert_same("guest-get-fsinfo", &q.0, &p.0, &opts);
    assert_same("guest-get-disks", &q.1, &p.1, &ShapeOpts::exact());
}

#[test]
fn memory_blocks_are_equal() {
    let pair = Pair::new();
    let (q, p) = pair.each(|a| {
        let mut c = connect(a);
        (
            c.execute("guest-get-memory-blocks", Value::Null)
                .expect("reply"),
            c.execute("guest-get-memory-block-info", Value::Null)
                .expect("reply"),
        )
    });
    assert_same("guest-get-memory-blocks", &q.0, &p.0, &ShapeOpts::exact());
    assert_same(
        "guest-get-memory-block-info",
        &q.1,
        &p.1,
        &ShapeOpts::exact(),
    );
}

/// Requests that leave every CPU as it is, and argument errors.
fn vcpu_cases() -> Vec<Value> {
    let cpu = |id: Value, online: bool| json!({"logical-id": id, "online": online});
    vec![
        json!({"vcpus": []}),
        json!({"vcpus": [cpu(json!(99999), true)]}),
        json!({"vcpus": [cpu(json!(-1), true)]}),
        json!({"vcpus": [cpu(json!(i64::MAX), false)]}),
        json!({"vcpus": [cpu(json!(0), false)]}),
        json!({"vcpus": [cpu(json!(0), true)]}),
        // Partial success: the count of entries before the first failure.
        json!({"vcpus": [cpu(json!(0), true), cpu(json!(99999), true), cpu(json!(0), true)]}),
        json!({"vcpus": [cpu(json!("x"), true)]}),
        json!({"vcpus": [cpu(json!(1.5), true)]}),
        json!({"vcpus": [cpu(json!(u64::MAX), true)]}),
        json!({"vcpus": [{"online": true}]}),
        json!({"vcpus": [{"logical-id": 0}]}),
        json!({"vcpus": [{"logical-id": 0, "online": true, "can-offline": 1}]}),
        json!({"vcpus": [{"logical-id": 0, "online": true, "bogus": 1}]}),
        json!({"vcpus": {}}),
        json!({"vcpus": [5]}),
        json!({}),
    ]
}

#[test]
fn set_vcpus_results_and_errors_agree() {
    let cases = vcpu_cases();
    let pair = Pair::new();
    let (q, p) = pair.each(|a| {
        let mut c = connect(a);
        cases
            .iter()
            .map(|args| c.execute("guest-set-vcpus", args.clone()).expect("reply"))
            .collect::<Vec<_>>()
    });
    assert_eq!(q[6], json!({"return": 1}), "qemu-ga partial success");
    assert!(
        error_of(&q[1]).is_some(),
        "qemu-ga accepted cpu 99999: {}",
        q[1]
    );
    let mut d = Divergences::default();
    for ((args, qv), pv) in cases.iter().zip(&q).zip(&p) {
        d.same(
            &format!("guest-set-vcpus {args}"),
            qv,
            pv,
            &ShapeOpts::exact(),
        );
    }
    d.finish();
}

#[test]
fn set_memory_blocks_results_and_errors_agree() {
    let blk = |index: Value, online: bool| json!({"phys-index": index, "online": online});
    // An online block to "re-online" (a no-op), taken from qemu-ga's own list.
    let online = {
        let (q, _) = both("guest-get-memory-blocks", Value::Null);
        q["return"]
            .as_array()
            .and_then(|l| l.iter().find(|b| b["online"] == true))
            .map(|b| b["phys-index"].clone())
    };
    let mut cases = vec![
        json!({"mem-blks": []}),
        json!({"mem-blks": [blk(json!(1_000_000), true)]}),
        json!({"mem-blks": [blk(json!(1_000_000), false)]}),
        json!({"mem-blks": [blk(json!(-1), true)]}),
        json!({"mem-blks": [blk(json!(u64::MAX), true)]}),
        json!({"mem-blks": [blk(json!("x"), true)]}),
        json!({"mem-blks": [blk(json!(1.0), true)]}),
        json!({"mem-blks": [{"phys-index": 1, "online": true, "can-offline": 1}]}),
        json!({"mem-blks": [{"online": true}]}),
        json!({}),
    ];
    if let Some(index) = online {
        cases.push(json!({"mem-blks": [blk(index, true), blk(json!(1_000_001), true)]}));
    }
    let pair = Pair::new();
    let (q, p) = pair.each(|a| {
        let mut c = connect(a);
        cases
            .iter()
            .map(|args| {
                c.execute("guest-set-memory-blocks", args.clone())
                    .expect("reply")
            })
            .collect::<Vec<_>>()
    });
    let mut d = Divergences::default();
    for ((args, qv), pv) in cases.iter().zip(&q).zip(&p) {
        d.same(
            &format!("guest-set-memory-blocks {args}"),
            qv,
            pv,
            &ShapeOpts::exact(),
        );
    }
    d.finish();
}

/// Arguments to the argument-less inventory commands are refused alike.
#[test]
fn inventory_commands_reject_arguments_alike() {
    let cmds = [
        "guest-network-get-interfaces",
        "guest-get-vcpus",
        "guest-get-fsinfo",
        "guest-get-disks",
        "guest-get-diskstats",
        "guest-get-cpustats",
        "guest-get-memory-blocks",
        "guest-get-memory-block-info",
        "guest-fsfreeze-status",
    ];
    let pair = Pair::new();
    let (q, p) = pair.each(|a| {
        let mut c = connect(a);
        cmds.map(|cmd| c.execute(cmd, json!({"x": 1})).expect("reply"))
    });
    let mut d = Divergences::default();
    for ((cmd, qv), pv) in cmds.iter().zip(&q).zip(&p) {
        d.same_error(cmd, qv, pv);
    }
    d.finish();
}
