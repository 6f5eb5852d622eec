//! End-to-end: porthole's client against porthole-agent inside a real VM (QEMU, Debian's kernel,
//! the busybox initramfs from `vm/build-image.sh`).
//!
//! One boot serves every case: booting under TCG costs tens of seconds, so the cases run in
//! order inside one test function, each reported on its own line, and the test fails at the
//! end naming every case that failed. The order matters where a case changes the VM: the agent
//! is killed near the end, and guest-shutdown, which ends QEMU, comes last.

use porthole_client::commands::{CaptureOutput, ExecArgs};
use porthole_client::{Client, ClientError, Endpoint, ExecOutput, Options};
use porthole_vmtest::{disk, Vm, VmConfig, AGENT_VSOCK_PORT, GUEST_IP, REFUSING_VSOCK_PORT};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

#[path = "vm/copy.rs"]
mod copy;
#[path = "vm/exec.rs"]
mod exec;
#[path = "vm/faults.rs"]
mod faults;
#[path = "vm/freeze.rs"]
mod freeze;
#[path = "vm/sweep.rs"]
mod sweep;

use porthole_vmtest::outcome::{check, err, Outcome};

fn options() -> Options {
    Options {
        handshake_timeout: Duration::from_secs(20),
        call_timeout: Duration::from_secs(60),
        ..Options::default()
    }
}

struct Suite {
    vm: Vm,
    failures: Vec<String>,
}

impl Suite {
    fn client(&self) -> Result<Client, String> {
        Client::connect_unix(self.vm.porthole_socket(), options()).map_err(err)
    }

    fn case(&mut self, name: &str, body: impl FnOnce(&mut Suite) -> Outcome) {
        let start = Instant::now();
        let outcome = body(self);
        let secs = start.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => eprintln!("vm-e2e: ok     {name} ({secs:.1}s)"),
            Err(why) => {
                eprintln!("vm-e2e: FAILED {name} ({secs:.1}s): {why}");
                self.failures.push(format!("{name}: {why}"));
            }
        }
    }
}

fn exec(client: &mut Client, program: &str, args: &[&str]) -> Result<ExecOutput, String> {
    let request = ExecArgs {
        path: program.into(),
        arg: Some(args.iter().map(|a| a.to_string()).collect()),
        env: None,
        input_data: None,
        capture_output: Some(CaptureOutput::Flag(true)),
    };
    client
        .exec_wait(
            &request,
            Duration::from_millis(50),
            Some(Duration::from_secs(60)),
        )
        .map_err(err)
}

fn sh(client: &mut Client, script: &str) -> Result<String, String> {
    let out = exec(client, "/bin/sh", &["-c", script])?;
    check(out.exitcode == Some(0), || {
        format!(
            "`{script}` exited {:?}: {}",
            out.exitcode,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn guest_vm_end_to_end() {
    let start = Instant::now();
    // Without the vsock daemon the VM boots without vsock: every other case still runs, and the
    // vsock cases fail saying what to install.
    let vsock = match porthole_vmtest::vsockd::find() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("vm-e2e: booting WITHOUT vsock: {e}");
            false
        }
    };
    let config = VmConfig {
        vsock,
        ..VmConfig::default()
    };
    let mut vm = Vm::start(config).unwrap_or_else(|e| panic!("cannot start the VM: {e}"));
    let booted = vm
        .wait_for_agent()
        .unwrap_or_else(|e| panic!("the agent in the VM did not come up: {e}"));
    eprintln!(
        "vm-e2e: image and boot {:.1}s (agent answered {:.1}s after QEMU started, {})",
        start.elapsed().as_secs_f64(),
        booted.as_secs_f64(),
        vm.accel
    );
    let mut suite = Suite {
        vm,
        failures: Vec::new(),
    };

    suite.case("ping on both virtio-serial ports", ping_both_ports);
    suite.case("info", info);
    suite.case("os-release and kernel", os_info);
    suite.case("exec with output and status", exec_output);
    suite.case("4 MiB file written and read back", file_round_trip);
    suite.case("ext4 data disk in guest-get-fsinfo", fsinfo);
    suite.case("eth0 with the user-net address", network);
    suite.case("hybrid vsock ping and exec", hybrid_vsock);
    suite.case("hybrid vsock port nobody listens on", hybrid_vsock_refused);
    suite.case(
        "vsock-listen turns away a CID it does not admit",
        vsock_cid_not_admitted,
    );
    suite.case(
        "read-only groups alike over virtio-serial and hybrid vsock",
        sweep::every_group_over_both_transports,
    );
    suite.case("exec with input-data", exec::stdin_at_start);
    suite.case(
        "exec streamed, stdin after the start",
        exec::stdin_after_start_and_streaming,
    );
    suite.case(
        "exec output seen before the exit",
        exec::streaming_before_exit,
    );
    suite.case(
        "exec timeout kills the process group",
        exec::timeout_kills_the_group,
    );
    suite.case("exec as a non-root user", exec::as_non_root_user);
    suite.case(
        "64 MiB host to guest, sha256 both sides",
        copy::host_to_guest,
    );
    suite.case(
        "64 MiB guest to host, sha256 both sides",
        copy::guest_to_host,
    );
    suite.case(
        "fsfreeze: a write blocks until the thaw",
        freeze::write_blocks_until_thaw,
    );
    suite.case("fsfreeze: the auto-thaw fires", freeze::auto_thaw);
    suite.case("wrong socket path", faults::wrong_socket_path);
    suite.case(
        "virtio-serial port without an agent",
        faults::port_without_agent,
    );
    suite.case(
        "agent stopped: call and handshake time out",
        faults::guest_never_answers,
    );
    suite.case("AF_VSOCK to a CID nobody has", faults::vsock_cid_nobody_has);
    suite.case(
        "client killed mid-request, then a working one",
        killed_client,
    );
    suite.case("agent killed in the guest and restarted", agent_restart);
    suite.case("guest-shutdown ends QEMU", shutdown);

    let total = start.elapsed().as_secs_f64();
    eprintln!("vm-e2e: whole suite {total:.1}s");
    assert!(
        suite.failures.is_empty(),
        "{} case(s) failed:\n{}\n--- guest console ---\n{}",
        suite.failures.len(),
        suite.failures.join("\n"),
        suite.vm.console()
    );
}

fn ping_both_ports(suite: &mut Suite) -> Outcome {
    suite.client()?.ping().map_err(err)?;
    Client::connect_unix(suite.vm.qga_socket(), options())
        .and_then(|mut c| c.ping())
        .map_err(|e| format!("org.qemu.guest_agent.0: {e}"))
}

fn info(suite: &mut Suite) -> Outcome {
    let info = suite.client()?.info().map_err(err)?;
    check(!info.version.is_empty(), || "empty version".into())?;
    for name in [
        "guest-exec",
        "guest-file-open",
        "guest-get-fsinfo",
        "guest-shutdown",
    ] {
        check(
            info.supported_commands.iter().any(|c| c.name == name),
            || format!("{name} missing from supported_commands"),
        )?;
    }
    Ok(())
}

/// The os-release the image carries, parsed on the host.
fn image_os_release() -> Vec<(String, String)> {
    let path = porthole_vmtest::image::repo_root().join("vm/rootfs/etc/os-release");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

fn os_info(suite: &mut Suite) -> Outcome {
    let os = suite.client()?.os_info().map_err(err)?;
    let release = image_os_release();
    let field = |key: &str| {
        release
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let pairs = [
        ("ID", os.id.clone()),
        ("NAME", os.name.clone()),
        ("PRETTY_NAME", os.pretty_name.clone()),
        ("VERSION", os.version.clone()),
        ("VERSION_ID", os.version_id.clone()),
        ("VARIANT", os.variant.clone()),
        ("VARIANT_ID", os.variant_id.clone()),
    ];
    for (key, got) in pairs {
        check(got == field(key), || {
            format!("{key}: agent says {got:?}, image has {:?}", field(key))
        })?;
    }
    let kernel = suite
        .vm
        .image
        .manifest
        .lines()
        .find_map(|l| l.strip_prefix("kernel-release "))
        .map(str::to_string);
    check(os.kernel_release == kernel, || {
        format!(
            "kernel-release {:?}, image has {kernel:?}",
            os.kernel_release
        )
    })?;
    check(os.machine.as_deref() == Some("x86_64"), || {
        format!("machine {:?}", os.machine)
    })
}

fn exec_output(suite: &mut Suite) -> Outcome {
    let mut client = suite.client()?;
    let out = exec(
        &mut client,
        "/bin/sh",
        &["-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    )?;
    check(out.stdout == b"to-stdout\n", || {
        format!("stdout {:?}", out.stdout)
    })?;
    check(out.stderr == b"to-stderr\n", || {
        format!("stderr {:?}", out.stderr)
    })?;
    check(out.exitcode == Some(3), || {
        format!("exit code {:?}", out.exitcode)
    })?;
    let (name, contents) = disk::FILES[0];
    let cat = sh(&mut client, &format!("cat {}/{name}", disk::MOUNTPOINT))?;
    check(cat == contents, || format!("{name} reads {cat:?}"))
}

/// 4 MiB of deterministic, incompressible bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn file_round_trip(suite: &mut Suite) -> Outcome {
    const PATH: &str = "/tmp/porthole-4m.bin";
    let data = pattern(4 << 20);
    let expected = format!("{:x}", Sha256::digest(&data));
    let mut client = suite.client()?;
    client.write_file(PATH, &data, 1 << 20).map_err(err)?;
    let guest_sum = sh(&mut client, &format!("sha256sum {PATH}"))?;
    check(
        guest_sum.split_whitespace().next() == Some(&expected),
        || format!("guest sha256sum says {guest_sum:?}, host {expected}"),
    )?;
    let mut back = Vec::new();
    let n = client.read_file_to(PATH, 1 << 20, &mut back).map_err(err)?;
    check(n == data.len() as u64, || format!("read {n} bytes"))?;
    let got = format!("{:x}", Sha256::digest(&back));
    check(got == expected, || {
        format!("read back sha256 {got}, wrote {expected}")
    })
}

fn fsinfo(suite: &mut Suite) -> Outcome {
    let value = call(suite, "guest-get-fsinfo", Value::Null)?;
    let entries = value.as_array().ok_or("not an array")?;
    let data = entries
        .iter()
        .find(|e| e["mountpoint"] == disk::MOUNTPOINT)
        .ok_or_else(|| format!("no entry for {}: {value}", disk::MOUNTPOINT))?;
    check(data["type"] == "ext4", || format!("type {}", data["type"]))?;
    check(data["name"] == "vda", || format!("name {}", data["name"]))?;
    let total = data["total-bytes"].as_u64().unwrap_or(0);
    check(total > (16 << 20) && total <= disk::DISK_BYTES, || {
        format!("total-bytes {total}")
    })?;
    let bus = &data["disk"][0]["bus-type"];
    check(bus == "virtio", || format!("disk bus-type {bus}: {data}"))
}

fn network(suite: &mut Suite) -> Outcome {
    let value = call(suite, "guest-network-get-interfaces", Value::Null)?;
    let eth0 = value
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "eth0"))
        .ok_or_else(|| format!("no eth0: {value}"))?;
    check(eth0["hardware-address"] == "52:54:00:12:34:56", || {
        format!("hardware-address {}", eth0["hardware-address"])
    })?;
    let wanted = json!({"ip-address": GUEST_IP, "ip-address-type": "ipv4", "prefix": 24});
    let has = eth0["ip-addresses"]
        .as_array()
        .is_some_and(|a| a.contains(&wanted));
    check(has, || format!("eth0 lacks {wanted}: {eth0}"))
}

fn call(suite: &mut Suite, command: &str, args: Value) -> Result<Value, String> {
    suite
        .client()?
        .call(command, args, Duration::from_secs(60))
        .map_err(err)
}

fn hybrid_endpoint(suite: &Suite, port: u32) -> Result<Endpoint, String> {
    let path = suite.vm.hybrid_vsock_socket().ok_or(
        "the VM has no vsock device: vhost-device-vsock is missing \
         (cargo install vhost-device-vsock --locked)",
    )?;
    Ok(Endpoint::HybridVsock { path, port })
}

fn hybrid_vsock(suite: &mut Suite) -> Outcome {
    let endpoint = hybrid_endpoint(suite, AGENT_VSOCK_PORT)?;
    let mut client = Client::connect(&endpoint, options()).map_err(err)?;
    client.ping().map_err(err)?;
    let uname = sh(&mut client, "uname -n")?;
    check(uname == "porthole-vm\n", || {
        format!("uname -n says {uname:?}")
    })
}

fn hybrid_vsock_refused(suite: &mut Suite) -> Outcome {
    let endpoint = hybrid_endpoint(suite, 4321)?;
    // The VMM waits for the guest's refusal, which a loaded TCG guest can take a second to send.
    let options = Options {
        connect_timeout: Duration::from_secs(3),
        ..options()
    };
    let start = Instant::now();
    let result = Client::connect(&endpoint, options);
    let secs = start.elapsed().as_secs_f64();
    match result {
        Err(ClientError::GuestNotListening { .. }) if secs < 4.5 => Ok(()),
        other => Err(format!("after {secs:.1}s: {other:?}")),
    }
}

/// The agent on [`REFUSING_VSOCK_PORT`] admits only CID 7: the host (CID 2) is dropped at
/// once, so the session ends before any handshake reply; the main agent still answers.
fn vsock_cid_not_admitted(suite: &mut Suite) -> Outcome {
    let endpoint = hybrid_endpoint(suite, REFUSING_VSOCK_PORT)?;
    let short = Options {
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        ..options()
    };
    let start = Instant::now();
    let result = Client::connect(&endpoint, short);
    let secs = start.elapsed().as_secs_f64();
    match result {
        Ok(_) => return Err("the host was served on the refusing agent's port".into()),
        Err(ClientError::Timeout { .. }) => {
            return Err(format!("a timeout after {secs:.1}s, not a refusal"))
        }
        Err(e) => check(secs < 9.0, || format!("refused only after {secs:.1}s: {e}"))?,
    }
    let mut client =
        Client::connect(&hybrid_endpoint(suite, AGENT_VSOCK_PORT)?, options()).map_err(err)?;
    client.ping().map_err(err)
}

fn killed_client(suite: &mut Suite) -> Outcome {
    let socket = suite.vm.porthole_socket();
    // Half a request, then the client dies (its socket closes, as when the process is killed).
    let mut half = UnixStream::connect(&socket).map_err(err)?;
    half.write_all(br#"{"execute": "guest-file-open", "arguments": {"path": "/da"#)
        .map_err(err)?;
    drop(half);
    // A whole request whose 4 MiB reply nobody reads: it is left in the channel.
    let mut client = suite.client()?;
    let handle = client
        .file_open("/tmp/porthole-4m.bin", None)
        .map_err(err)?;
    drop(client);
    let mut greedy = UnixStream::connect(&socket).map_err(err)?;
    let request =
        json!({"execute": "guest-file-read", "arguments": {"handle": handle, "count": 4 << 20}});
    greedy
        .write_all(request.to_string().as_bytes())
        .map_err(err)?;
    drop(greedy);
    // The next client synchronises past all of it.
    let mut client = suite.client()?;
    client.ping().map_err(err)?;
    let (name, contents) = disk::FILES[1];
    let mut out = Vec::new();
    client
        .read_file_to(&format!("{}/{name}", disk::MOUNTPOINT), 4096, &mut out)
        .map_err(err)?;
    check(out == contents.as_bytes(), || {
        format!("{name} reads {out:?}")
    })?;
    // Whatever the agent did with the abandoned read, the handle is still ours to close.
    let closed = client.file_close(handle);
    check(closed.is_ok(), || {
        format!("closing handle {handle}: {closed:?}")
    })
}

fn agent_restart(suite: &mut Suite) -> Outcome {
    let mut client = suite.client()?;
    let before = sh(&mut client, "cat /run/porthole-agent.pid")?;
    // The agent answers guest-exec with the pid, then the shell kills it.
    let kill = ExecArgs {
        path: "/bin/sh".into(),
        arg: Some(vec![
            "-c".into(),
            "sleep 0.2; kill -9 $(cat /run/porthole-agent.pid)".into(),
        ]),
        env: None,
        input_data: None,
        capture_output: None,
    };
    client.exec(&kill).map_err(err)?;
    drop(client);
    std::thread::sleep(Duration::from_secs(1));
    // The init loop restarts it; reconnect until it answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let quick = Options {
        handshake_timeout: Duration::from_secs(2),
        ..options()
    };
    let mut client = loop {
        match Client::connect_unix(suite.vm.porthole_socket(), quick) {
            Ok(client) => break client,
            Err(e) if Instant::now() > deadline => return Err(format!("not back in 60 s: {e}")),
            Err(_) => {}
        }
    };
    client.ping().map_err(err)?;
    let after = sh(&mut client, "cat /run/porthole-agent.pid")?;
    check(before.trim() != after.trim(), || {
        format!("same agent pid {} before and after the kill", before.trim())
    })
}

fn shutdown(suite: &mut Suite) -> Outcome {
    let mut client = suite.client()?;
    client.shutdown(None, Duration::from_secs(3)).map_err(err)?;
    let status = suite.vm.wait_exit(Duration::from_secs(120));
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!("QEMU exited with {status}")),
        None => Err("QEMU still runs 120 s after guest-shutdown".into()),
    }
}
