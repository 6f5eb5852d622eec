//! porthole-agent against Debian's qemu-ga 7.2, both inside the test VM on the same boot.
//!
//!     cargo bench -p porthole-vmtest --bench in_vm
//!
//! The image (`vm/build-image.sh`) carries the release porthole-agent and Debian's
//! `/usr/sbin/qemu-ga` with the libraries it loads; the guest's init serves porthole-agent on
//! `org.porthole.agent.0` and hybrid vsock, and qemu-ga on `org.qemu.guest_agent.ref`. The host
//! side is the same `porthole-client` for every agent and channel, so the client's own JSON and
//! base64 work is in every number alike.
//!
//! Workloads (each timed on the host, wall clock):
//! - guest-ping round trip, interleaved between the channels request by request.
//! - guest-exec `/bin/true`, then guest-exec-status polled without pause until it has exited.
//! - a file of `PORTHOLE_VM_BENCH_MIB` MiB (default 32) host→guest and back guest→host.
//!   qemu-ga: guest-file-open/-write/-close and guest-file-read in 1 MiB chunks (what
//!   `porthole agent cp` uses with qemu-ga; libvirt caps an agent reply at 10 MiB, so
//!   libvirt users cannot go much higher). porthole: what `porthole agent cp` uses,
//!   guest-porthole-file-write/-read in 8 MiB chunks, each chunk's SHA-256 checked and the
//!   whole file's hash verified by the agent before it installs an upload; for comparison also
//!   the plain guest-file-* commands in the same 1 MiB chunks as qemu-ga.
//!   Every transfer is checked afterwards (untimed): the guest's `sha256sum` of an upload and
//!   the bytes of a download.
//! - the same for porthole-agent over hybrid vsock (qemu-ga has no vsock).
//!
//! `PORTHOLE_VM_BENCH_PROFILE=1` prints instead where porthole's file time goes: the plain file
//! commands at 1 and 8 MiB, the porthole ones at 8 MiB, the agent's SHA-256 alone, and the plain
//! commands over vsock.
//!
//! Prints one table; `p/q` is porthole ÷ qemu-ga. Exits non-zero if the VM cannot boot, an
//! agent does not answer or a transfer comes back wrong; the goals are reported, not enforced.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use porthole_client::commands::{ExecArgs, PxFinal};
use porthole_client::{Client, Endpoint, Options};
use porthole_vmtest::{Vm, VmConfig, AGENT_VSOCK_PORT};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const PINGS: usize = 300;
const EXECS: usize = 40;
/// qemu-ga's chunk: what `porthole agent cp` uses with qemu-ga.
const QGA_CHUNK: usize = 1 << 20;
/// porthole's chunk: what `porthole agent cp` uses with porthole-agent.
const PX_CHUNK: usize = 8 << 20;

type Res<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("in_vm benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn options() -> Options {
    Options {
        handshake_timeout: Duration::from_secs(20),
        call_timeout: Duration::from_secs(300),
        ..Options::default()
    }
}

/// The channels measured.
struct Channels {
    qga: Client,
    porthole: Client,
    vsock: Client,
}

fn run() -> Res<()> {
    let mib: usize = std::env::var("PORTHOLE_VM_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    porthole_vmtest::vsockd::find().map_err(err)?;
    eprintln!("in_vm: building the image and booting the VM...");
    let mut vm = Vm::start(VmConfig::default()).map_err(|e| format!("starting the VM: {e}"))?;
    let booted = vm.wait_for_agent().map_err(err)?;
    eprintln!(
        "in_vm: porthole-agent answered {:.1}s after QEMU started ({})",
        booted.as_secs_f64(),
        vm.accel
    );
    let mut ch = Channels {
        qga: connect_qga_ref(&vm)?,
        porthole: Client::connect_unix(vm.porthole_socket(), options()).map_err(err)?,
        vsock: connect_vsock(&vm)?,
    };
    let info = ch.qga.info().map_err(err)?;
    eprintln!(
        "in_vm: qemu-ga {} answers on the reference port",
        info.version
    );

    let data = pattern(mib << 20);
    if std::env::var_os("PORTHOLE_VM_BENCH_PROFILE").is_some() {
        return profile(&mut ch.porthole, &mut ch.vsock, &data);
    }
    eprintln!("in_vm: ping x{PINGS}, exec x{EXECS} (interleaved)...");
    let ping = interleaved(&mut ch, PINGS, |c| {
        let t = Instant::now();
        c.ping().map_err(err)?;
        Ok(t.elapsed())
    })?;
    let exec = interleaved(&mut ch, EXECS, exec_true)?;
    eprintln!("in_vm: files of {mib} MiB...");
    let sha = hex(&Sha256::digest(&data));
    // Uploads are checked with the guest's sha256sum through another porthole channel (a
    // virtio-serial port takes one host connection at a time).
    let file = Files {
        qga: transfer(
            &mut ch.qga,
            &mut ch.vsock,
            &data,
            &sha,
            Method::Qga(QGA_CHUNK),
        )?,
        porthole: transfer(&mut ch.porthole, &mut ch.vsock, &data, &sha, Method::Px)?,
        porthole_qga: transfer(
            &mut ch.porthole,
            &mut ch.vsock,
            &data,
            &sha,
            Method::Qga(QGA_CHUNK),
        )?,
        vsock: transfer(&mut ch.vsock, &mut ch.porthole, &data, &sha, Method::Px)?,
    };
    print_table(&ping, &exec, &file, mib);
    println!(
        "(accel {}, guest 1 vCPU / {} MiB; qemu-ga {})",
        vm.accel,
        VmConfig::default().memory_mib,
        info.version
    );
    vm.stop();
    Ok(())
}

/// qemu-ga on `org.qemu.guest_agent.ref`: it starts beside porthole-agent; give it a minute.
fn connect_qga_ref(vm: &Vm) -> Res<Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let quick = Options {
        handshake_timeout: Duration::from_secs(2),
        ..options()
    };
    loop {
        match Client::connect_unix(vm.qga_ref_socket(), quick) {
            Ok(mut client) => {
                client.set_call_timeout(options().call_timeout);
                return Ok(client);
            }
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "qemu-ga on {} did not answer: {e}\n--- guest console ---\n{}",
                    porthole_vmtest::vm::QGA_REF_PORT,
                    vm.console()
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn connect_vsock(vm: &Vm) -> Res<Client> {
    let path = vm
        .hybrid_vsock_socket()
        .ok_or("the VM has no vsock device")?;
    let endpoint = Endpoint::HybridVsock {
        path,
        port: AGENT_VSOCK_PORT,
    };
    Client::connect(&endpoint, options()).map_err(err)
}

/// Runs `op` `n` times on each channel in turn, so load on the host hits all alike.
fn interleaved(
    ch: &mut Channels,
    n: usize,
    mut op: impl FnMut(&mut Client) -> Res<Duration>,
) -> Res<[Stats; 3]> {
    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..n {
        for (i, c) in [&mut ch.qga, &mut ch.porthole, &mut ch.vsock]
            .into_iter()
            .enumerate()
        {
            times[i].push(op(c)?);
        }
    }
    Ok(times.map(stats))
}

fn exec_true(c: &mut Client) -> Res<Duration> {
    let t = Instant::now();
    let pid = c
        .exec(&ExecArgs {
            path: "/bin/true".into(),
            arg: None,
            env: None,
            input_data: None,
            capture_output: None,
        })
        .map_err(err)?;
    loop {
        let status = c.exec_status(pid).map_err(err)?;
        if status.exited {
            if status.exitcode != Some(0) {
                return Err(format!("/bin/true ended with {status:?}"));
            }
            return Ok(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(30) {
            return Err("/bin/true did not exit within 30 s".into());
        }
    }
}

struct Stats {
    median: Duration,
    p99: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| {
        let i = ((v.len().saturating_sub(1)) as f64 * q).round() as usize;
        v.get(i).copied().unwrap_or_default()
    };
    Stats {
        median: at(0.5),
        p99: at(0.99),
    }
}

/// How a file moves.
#[derive(Clone, Copy)]
enum Method {
    /// guest-file-open/-write/-read/-close with this many bytes per call.
    Qga(usize),
    /// guest-porthole-file-write/-read in [`PX_CHUNK`] chunks, as `porthole agent cp` does.
    Px,
}

/// Throughput both ways, MB/s (10^6 bytes per second).
struct Throughput {
    up: f64,
    down: f64,
}

struct Files {
    qga: Throughput,
    porthole: Throughput,
    porthole_qga: Throughput,
    vsock: Throughput,
}

/// Uploads `data`, checks it with the guest's sha256sum through `verifier`, downloads it back,
/// compares, removes it.
fn transfer(
    c: &mut Client,
    verifier: &mut Client,
    data: &[u8],
    sha: &str,
    how: Method,
) -> Res<Throughput> {
    let path = "/tmp/in-vm-bench.bin";
    let t = Instant::now();
    match how {
        Method::Qga(chunk) => c.write_file(path, data, chunk).map_err(err)?,
        Method::Px => px_upload(c, path, data, sha)?,
    }
    let up = mbs(data.len(), t.elapsed());
    let guest_sum = sh(verifier, &format!("sha256sum {path}"))?;
    if guest_sum.split_whitespace().next() != Some(sha) {
        return Err(format!(
            "uploaded file: guest says {guest_sum:?}, sent {sha}"
        ));
    }
    let t = Instant::now();
    let back = match how {
        Method::Qga(chunk) => {
            let mut back = Vec::with_capacity(data.len());
            c.read_file_to(path, chunk as u64, &mut back).map_err(err)?;
            back
        }
        Method::Px => px_download(c, path, data.len())?,
    };
    let down = mbs(data.len(), t.elapsed());
    if back != data {
        return Err(format!(
            "downloaded {} bytes that differ from the upload",
            back.len()
        ));
    }
    sh(verifier, &format!("rm -f {path}"))?;
    Ok(Throughput { up, down })
}

/// `PORTHOLE_VM_BENCH_PROFILE=1`: where porthole's file time goes, one step at a time, on
/// virtio-serial, then the plain commands over hybrid vsock (qemu-ga is not measured).
fn profile(c: &mut Client, verifier: &mut Client, data: &[u8]) -> Res<()> {
    let path = "/tmp/in-vm-profile.bin";
    let sha_ni = sh(verifier, "grep -c sha_ni /proc/cpuinfo || true")?;
    println!("guest CPUs with SHA-NI: {}", sha_ni.trim());
    let sha = hex(&Sha256::digest(data));
    let timed = |what: &str, f: &mut dyn FnMut() -> Res<()>| -> Res<()> {
        let t = Instant::now();
        f()?;
        println!("{what:<52} {:>8.2} MB/s", mbs(data.len(), t.elapsed()));
        Ok(())
    };
    for chunk in [1usize << 20, 8 << 20] {
        let mib = chunk >> 20;
        timed(&format!("guest-file-write, {mib} MiB chunks"), &mut || {
            c.write_file(path, data, chunk).map_err(err)
        })?;
        timed(&format!("guest-file-read, {mib} MiB chunks"), &mut || {
            let mut back = Vec::new();
            c.read_file_to(path, chunk as u64, &mut back).map_err(err)?;
            (back == data)
                .then_some(())
                .ok_or("read back differs".into())
        })?;
    }
    timed("guest-porthole-file-sha256 (agent's SHA-256)", &mut || {
        let got = c.px_file_sha256(path).map_err(err)?;
        (got.sha256 == sha).then_some(()).ok_or("wrong hash".into())
    })?;
    timed("busybox sha256sum in the guest (via exec)", &mut || {
        sh(verifier, &format!("sha256sum {path}")).map(drop)
    })?;
    timed("guest-porthole-file-write, 8 MiB chunks", &mut || {
        px_upload(c, path, data, &sha)
    })?;
    timed("guest-porthole-file-read, 8 MiB chunks", &mut || {
        let back = px_download(c, path, data.len())?;
        (back == data)
            .then_some(())
            .ok_or("read back differs".into())
    })?;
    // The same plain commands over hybrid vsock, to tell the channel from the agent.
    timed(
        "guest-file-write over hybrid vsock, 1 MiB chunks",
        &mut || verifier.write_file(path, data, 1 << 20).map_err(err),
    )?;
    timed(
        "guest-file-read over hybrid vsock, 1 MiB chunks",
        &mut || {
            let mut back = Vec::new();
            verifier
                .read_file_to(path, 1 << 20, &mut back)
                .map_err(err)?;
            (back == data)
                .then_some(())
                .ok_or("read back differs".into())
        },
    )?;
    sh(verifier, &format!("rm -f {path}")).map(drop)
}

/// `porthole agent cp FILE guest:PATH`'s transfer: chunks at offsets, the last one carrying the
/// whole file's SHA-256, which the agent checks before it installs the file.
fn px_upload(c: &mut Client, path: &str, data: &[u8], sha: &str) -> Res<()> {
    let chunks = data.chunks(PX_CHUNK).count();
    for (i, piece) in data.chunks(PX_CHUNK).enumerate() {
        let offset = (i * PX_CHUNK) as u64;
        let finish = (i + 1 == chunks).then(|| PxFinal {
            sha256: sha.to_string(),
            ..PxFinal::default()
        });
        let written = c.px_file_write(path, offset, piece, finish).map_err(err)?;
        if written.received != offset + piece.len() as u64 {
            return Err(format!("the agent holds {} bytes", written.received));
        }
        if i + 1 == chunks && !written.complete {
            return Err("the agent did not install the upload".into());
        }
    }
    Ok(())
}

/// `porthole agent cp guest:PATH FILE`'s transfer: each chunk's SHA-256 checked on arrival.
fn px_download(c: &mut Client, path: &str, size: usize) -> Res<Vec<u8>> {
    let mut out = Vec::with_capacity(size);
    loop {
        let chunk = c
            .px_file_read(path, out.len() as u64, Some(PX_CHUNK as u64))
            .map_err(err)?;
        let data = BASE64.decode(&chunk.data_b64).map_err(err)?;
        if hex(&Sha256::digest(&data)) != chunk.sha256_of_chunk {
            return Err(format!("chunk at {} fails its SHA-256", chunk.offset));
        }
        out.extend_from_slice(&data);
        if chunk.eof || data.is_empty() {
            return Ok(out);
        }
    }
}

fn sh(c: &mut Client, script: &str) -> Res<String> {
    let args = ExecArgs {
        path: "/bin/sh".into(),
        arg: Some(vec!["-c".into(), script.into()]),
        env: None,
        input_data: None,
        capture_output: Some(porthole_client::commands::CaptureOutput::Flag(true)),
    };
    let out = c
        .exec_wait(
            &args,
            Duration::from_millis(20),
            Some(Duration::from_secs(120)),
        )
        .map_err(err)?;
    if out.exitcode != Some(0) {
        return Err(format!("`{script}` exited {:?}", out.exitcode));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mbs(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic, incompressible bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn print_table(ping: &[Stats; 3], exec: &[Stats; 3], file: &Files, mib: usize) {
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    let rate = |r: f64| format!("{r:.1} MB/s");
    // Times: porthole ÷ qemu-ga, lower is better. Rates: porthole ÷ qemu-ga, higher is better.
    let time_row = |name: &str, q: Duration, p: Duration| {
        let ratio = p.as_secs_f64() / q.as_secs_f64().max(1e-12);
        (
            name.to_string(),
            ms(q),
            ms(p),
            ratio,
            "≤ 1".to_string(),
            ratio <= 1.0,
        )
    };
    let rate_row = |name: String, q: f64, p: f64, goal: f64| {
        let ratio = p / q.max(1e-12);
        (
            name,
            rate(q),
            rate(p),
            ratio,
            format!("≥ {goal}"),
            ratio >= goal,
        )
    };
    let [qp, pp, vp] = ping;
    let [qe, pe, ve] = exec;
    let rows = vec![
        time_row("ping median, virtio-serial", qp.median, pp.median),
        time_row("ping p99, virtio-serial", qp.p99, pp.p99),
        time_row("ping median, porthole on vsock", qp.median, vp.median),
        time_row("ping p99, porthole on vsock", qp.p99, vp.p99),
        time_row("exec /bin/true median, virtio-serial", qe.median, pe.median),
        time_row("exec /bin/true p99, virtio-serial", qe.p99, pe.p99),
        time_row(
            "exec /bin/true median, porthole on vsock",
            qe.median,
            ve.median,
        ),
        time_row("exec /bin/true p99, porthole on vsock", qe.p99, ve.p99),
        rate_row(
            format!("{mib} MiB host→guest, virtio-serial, cp path"),
            file.qga.up,
            file.porthole.up,
            2.0,
        ),
        rate_row(
            format!("{mib} MiB guest→host, virtio-serial, cp path"),
            file.qga.down,
            file.porthole.down,
            2.0,
        ),
        rate_row(
            format!("{mib} MiB host→guest, virtio-serial, both 1 MiB guest-file-*"),
            file.qga.up,
            file.porthole_qga.up,
            1.0,
        ),
        rate_row(
            format!("{mib} MiB guest→host, virtio-serial, both 1 MiB guest-file-*"),
            file.qga.down,
            file.porthole_qga.down,
            1.0,
        ),
        rate_row(
            format!("{mib} MiB host→guest, porthole on vsock, cp path"),
            file.qga.up,
            file.vsock.up,
            2.0,
        ),
        rate_row(
            format!("{mib} MiB guest→host, porthole on vsock, cp path"),
            file.qga.down,
            file.vsock.down,
            2.0,
        ),
    ];
    println!();
    println!("qemu-ga: guest-file-* in {} MiB chunks over virtio-serial; porthole \"cp path\": guest-porthole-file-* in {} MiB chunks", QGA_CHUNK >> 20, PX_CHUNK >> 20);
    println!(
        "{:<58} {:>12} {:>12} {:>7}  {:<5} holds",
        "metric", "qemu-ga", "porthole", "p/q", "goal"
    );
    println!("{}", "-".repeat(106));
    for (name, q, p, ratio, goal, holds) in rows {
        println!(
            "{name:<58} {q:>12} {p:>12} {ratio:>7.2}  {goal:<5} {}",
            if holds { "yes" } else { "NO" }
        );
    }
}
