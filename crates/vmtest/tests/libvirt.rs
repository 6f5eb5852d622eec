//! End-to-end through libvirt: porthole-agent in the test VM, run by a real (private) libvirt
//! daemon that owns the agent's channel, reached with `Endpoint::Libvirt` (the client library)
//! and `porthole agent --domain` (the CLI), both going through `virsh qemu-agent-command`.
//!
//! Four domains: `px-agent` boots the test image; `px-silent` has the agent channel but no
//! guest to answer on it (no kernel: the firmware idles); `px-nochannel` runs without the
//! channel; `px-off` is defined and never started. guest-shutdown, which ends `px-agent`, comes
//! last.
//! As in `vm.rs`, one boot serves every case; each case reports on its own line and the test
//! fails at the end naming every case that failed. A daemon that cannot start is a failure with
//! its log, never a skip.

use porthole_client::commands::{CaptureOutput, ExecArgs};
use porthole_client::{Client, ClientError, Endpoint, LibvirtError, Options};
use porthole_vmtest::libvirt::{DomainSpec, Libvirtd};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const AGENT_VM: &str = "px-agent";
const SILENT_VM: &str = "px-silent";
const OFF_VM: &str = "px-off";
const NO_CHANNEL_VM: &str = "px-nochannel";

use porthole_vmtest::outcome::{check, err, Outcome};

fn options() -> Options {
    Options {
        connect_timeout: Duration::from_secs(20),
        call_timeout: Duration::from_secs(60),
        ..Options::default()
    }
}

/// Deterministic bytes that do not compress into a pattern the agent could fake.
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The debug `porthole` CLI, built if needed (it is another package's binary, so cargo does
/// not hand its path to this test).
fn porthole_cli() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "-p", "porthole-cli", "--bin", "porthole"])
        .output()
        .expect("running cargo build -p porthole-cli");
    assert!(
        out.status.success(),
        "cargo build -p porthole-cli failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| porthole_vmtest::image::repo_root().join("target"));
    target.join("debug/porthole")
}

struct Suite {
    libvirtd: Libvirtd,
    cli: PathBuf,
    /// The image's manifest (kernel release, agent hash).
    manifest: String,
    failures: Vec<String>,
}

impl Suite {
    fn endpoint(&self, domain: &str) -> Endpoint {
        Endpoint::Libvirt {
            domain: domain.into(),
            uri: Some(self.libvirtd.uri().into()),
        }
    }

    fn client(&self, domain: &str) -> Result<Client, String> {
        Client::connect(&self.endpoint(domain), options()).map_err(err)
    }

    /// `porthole agent --domain DOMAIN --libvirt-uri URI ARGS...`
    fn porthole(&self, domain: &str, args: &[&str]) -> Result<Output, String> {
        Command::new(&self.cli)
            .args([
                "agent",
                "--domain",
                domain,
                "--libvirt-uri",
                self.libvirtd.uri(),
            ])
            .args(["--timeout", "60"])
            .args(args)
            .output()
            .map_err(|e| format!("running {}: {e}", self.cli.display()))
    }

    /// The CLI's standard output when it succeeded.
    fn porthole_ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.porthole(AGENT_VM, args)?;
        check(out.status.success(), || {
            format!(
                "porthole {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The CLI's standard error when it failed, as it must.
    fn porthole_fails(&self, domain: &str, args: &[&str]) -> Result<String, String> {
        let out = self.porthole(domain, args)?;
        check(!out.status.success(), || {
            format!("porthole --domain {domain} {args:?} succeeded")
        })?;
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn case(&mut self, name: &str, body: impl FnOnce(&mut Suite) -> Outcome) {
        let start = Instant::now();
        let outcome = body(self);
        let secs = start.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => eprintln!("libvirt-e2e: ok     {name} ({secs:.1}s)"),
            Err(why) => {
                eprintln!("libvirt-e2e: FAILED {name} ({secs:.1}s): {why}");
                self.failures.push(format!("{name}: {why}"));
            }
        }
    }

    /// Pings through libvirt until the guest's agent answers.
    fn wait_for_agent(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let last = match self
                .client(AGENT_VM)
                .and_then(|mut c| c.ping().map_err(err))
            {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) => e,
            };
            if start.elapsed() > timeout {
                return Err(format!(
                    "the agent did not answer through libvirt within {}s; last error: {last}\n\
                     --- guest console ---\n{}\n--- QEMU log ---\n{}\n--- libvirtd log ---\n{}",
                    timeout.as_secs(),
                    self.libvirtd.console(AGENT_VM),
                    self.libvirtd.qemu_log(AGENT_VM),
                    self.libvirtd.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn boot_timeout() -> Duration {
    let secs = std::env::var("PORTHOLE_VM_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    Duration::from_secs(secs)
}

fn start() -> Suite {
    let image =
        porthole_vmtest::image::build().unwrap_or_else(|e| panic!("building the image: {e}"));
    let manifest = image.manifest.clone();
    let mut libvirtd = Libvirtd::start().unwrap_or_else(|e| {
        panic!(
            "cannot start a private libvirtd (Debian packages {}): {e}",
            porthole_vmtest::libvirt::PACKAGES
        )
    });
    let domains = [
        DomainSpec {
            name: AGENT_VM.into(),
            memory_mib: 512,
            image: Some(image),
            agent_channel: true,
        },
        DomainSpec {
            name: SILENT_VM.into(),
            memory_mib: 64,
            image: None,
            agent_channel: true,
        },
        DomainSpec {
            name: NO_CHANNEL_VM.into(),
            memory_mib: 64,
            image: None,
            agent_channel: false,
        },
    ];
    for spec in &domains {
        libvirtd
            .create(spec)
            .unwrap_or_else(|e| panic!("creating domain {}: {e}", spec.name));
    }
    let off = DomainSpec {
        name: OFF_VM.into(),
        memory_mib: 64,
        image: None,
        agent_channel: true,
    };
    libvirtd
        .define(&off)
        .unwrap_or_else(|e| panic!("defining domain {OFF_VM}: {e}"));
    Suite {
        libvirtd,
        cli: porthole_cli(),
        manifest,
        failures: Vec::new(),
    }
}

#[test]
fn agent_through_libvirt() {
    let mut suite = start();
    match suite.wait_for_agent(boot_timeout()) {
        Ok(took) => eprintln!(
            "libvirt-e2e: agent answered {:.1}s after create",
            took.as_secs_f64()
        ),
        Err(why) => panic!("{why}"),
    }

    suite.case("client: ping, info, os, host name", |s| {
        let mut c = s.client(AGENT_VM)?;
        let start = Instant::now();
        for _ in 0..10 {
            c.ping().map_err(err)?;
        }
        let each = start.elapsed().as_secs_f64() * 100.0;
        eprintln!("libvirt-e2e: guest-ping through virsh: {each:.0} ms a call (10 calls)");
        let info = c.info().map_err(err)?;
        check(
            info.supported_commands
                .iter()
                .any(|cmd| cmd.name == "guest-porthole-exec"),
            || "guest-info lacks guest-porthole-exec".into(),
        )?;
        let os = c.os_info().map_err(err)?;
        let manifest = &s.manifest;
        let release = os.kernel_release.unwrap_or_default();
        check(
            manifest.contains(&format!("kernel-release {release}\n")),
            || format!("kernel-release {release:?} not in the image manifest:\n{manifest}"),
        )?;
        let host = c.host_name().map_err(err)?;
        check(host == "porthole-vm", || format!("host name {host:?}"))
    });

    suite.case("client: guest-exec polled to its exit", |s| {
        let mut c = s.client(AGENT_VM)?;
        let args = ExecArgs {
            path: "/bin/sh".into(),
            arg: Some(vec!["-c".into(), "echo out; echo err >&2; exit 3".into()]),
            env: None,
            input_data: None,
            capture_output: Some(CaptureOutput::Flag(true)),
        };
        let out = c
            .exec_wait(
                &args,
                Duration::from_millis(200),
                Some(Duration::from_secs(60)),
            )
            .map_err(err)?;
        check(
            out.stdout == b"out\n" && out.stderr == b"err\n" && out.exitcode == Some(3),
            || format!("{out:?}"),
        )
    });

    suite.case(
        "client: a file round trip larger than one virsh argument",
        |s| {
            let mut c = s.client(AGENT_VM)?;
            let data = pseudo_random(300 << 10, 7);
            c.write_file("/tmp/px-roundtrip.bin", &data, 1 << 20)
                .map_err(err)?;
            let mut back = Vec::new();
            c.read_file_to("/tmp/px-roundtrip.bin", 1 << 20, &mut back)
                .map_err(err)?;
            check(back == data, || {
                format!(
                    "read back {} bytes that differ from the {} written",
                    back.len(),
                    data.len()
                )
            })?;
            let theirs = c.px_file_sha256("/tmp/px-roundtrip.bin").map_err(err)?;
            check(theirs.sha256 == sha256_hex(&data), || {
                format!("guest sha256 {} != ours", theirs.sha256)
            })
        },
    );

    suite.case("client: a read larger than one libvirt reply", |s| {
        let mut c = s.client(AGENT_VM)?;
        let args = ExecArgs {
            path: "/bin/dd".into(),
            arg: Some(
                ["if=/dev/urandom", "of=/tmp/px-big.bin", "bs=1M", "count=6"]
                    .map(String::from)
                    .to_vec(),
            ),
            env: None,
            input_data: None,
            capture_output: Some(CaptureOutput::Flag(true)),
        };
        let made = c
            .exec_wait(
                &args,
                Duration::from_millis(200),
                Some(Duration::from_secs(60)),
            )
            .map_err(err)?;
        check(made.exitcode == Some(0), || format!("dd: {made:?}"))?;
        let mut back = Vec::new();
        let n = c
            .read_file_to("/tmp/px-big.bin", 16 << 20, &mut back)
            .map_err(err)?;
        let theirs = c.px_file_sha256("/tmp/px-big.bin").map_err(err)?;
        check(n == 6 << 20 && theirs.sha256 == sha256_hex(&back), || {
            format!(
                "read {n} bytes, sha256 {} vs guest {}",
                sha256_hex(&back),
                theirs.sha256
            )
        })
    });

    suite.case(
        "cli: ping, info, os, cat from the data disk, freeze-status",
        |s| {
            let ping = s.porthole_ok(&["ping"])?;
            check(ping == "ok\n", || format!("ping printed {ping:?}"))?;
            let info = s.porthole_ok(&["info"])?;
            check(
                info.starts_with("version: ") && info.contains("guest-porthole-exec"),
                || format!("info printed {info:?}"),
            )?;
            let os = s.porthole_ok(&["os"])?;
            check(os.contains("kernel-release"), || {
                format!("os printed {os:?}")
            })?;
            let (path, contents) = porthole_vmtest::disk::FILES[0];
            let cat = s.porthole_ok(&[
                "cat",
                &format!("{}/{path}", porthole_vmtest::disk::MOUNTPOINT),
            ])?;
            check(cat == contents, || format!("cat printed {cat:?}"))?;
            let status = s.porthole_ok(&["freeze-status"])?;
            check(status.contains("thawed"), || {
                format!("freeze-status printed {status:?}")
            })
        },
    );

    suite.case(
        "cli: exec streams output and exits with the guest's status",
        |s| {
            let out = s.porthole(
                AGENT_VM,
                &["exec", "--", "sh", "-c", "echo hi; echo oops >&2; exit 7"],
            )?;
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            check(
                out.status.code() == Some(7) && stdout == "hi\n" && stderr.contains("oops"),
                || {
                    format!(
                        "status {}, stdout {stdout:?}, stderr {stderr:?}",
                        out.status
                    )
                },
            )
        },
    );

    suite.case("limits: a reply beyond libvirt's fails clearly", |s| {
        let mut c = s.client(AGENT_VM)?;
        let args = serde_json::json!({"path": "/tmp/px-big.bin", "length": 5 << 20});
        let e = c
            .call("guest-porthole-file-read", args, Duration::from_secs(60))
            .err();
        check(matches!(e, Some(ClientError::ReplyTooLarge { .. })), || {
            format!("a 5 MiB read in one reply gave {e:?}")
        })
    });

    suite.case("cli: fsfreeze the data disk, then thaw", |s| {
        let froze = s.porthole_ok(&[
            "fsfreeze",
            "--mountpoint",
            porthole_vmtest::disk::MOUNTPOINT,
        ])?;
        let frozen = s.porthole_ok(&["freeze-status"])?;
        let thawed = s.porthole_ok(&["thaw"])?;
        let after = s.porthole_ok(&["freeze-status"])?;
        check(
            froze == "froze 1 filesystem(s)\n"
                && frozen == "frozen\n"
                && thawed == "thawed 1 filesystem(s)\n"
                && after == "thawed\n",
            || format!("{froze:?} {frozen:?} {thawed:?} {after:?}"),
        )
    });

    suite.case("cli: cp to the guest and back", |s| {
        let dir = tempfile::tempdir().map_err(err)?;
        let local = dir.path().join("up.bin");
        let back = dir.path().join("down.bin");
        let data = pseudo_random(500 << 10, 11);
        std::fs::write(&local, &data).map_err(err)?;
        let local_text = local.display().to_string();
        let back_text = back.display().to_string();
        s.porthole_ok(&["cp", &local_text, "guest:/tmp/px-cp.bin"])?;
        s.porthole_ok(&["cp", "guest:/tmp/px-cp.bin", &back_text])?;
        let got = std::fs::read(&back).map_err(err)?;
        check(got == data, || {
            format!(
                "copied back {} bytes that differ from the {} sent",
                got.len(),
                data.len()
            )
        })
    });

    suite.case("errors: a domain that does not exist", |s| {
        let mut c = s.client("px-no-such-domain")?;
        let e = c.ping().map(drop).err();
        check(
            matches!(
                e,
                Some(ClientError::Libvirt(LibvirtError::DomainNotFound { .. }))
            ),
            || format!("client got {e:?}"),
        )?;
        let stderr = s.porthole_fails("px-no-such-domain", &["ping"])?;
        check(
            stderr.contains("no domain 'px-no-such-domain'") && stderr.contains("virsh list --all"),
            || format!("cli said {stderr:?}"),
        )
    });

    suite.case("errors: a domain whose agent channel nobody answers", |s| {
        let mut c = s.client(SILENT_VM)?;
        let e = c.ping().map(drop).err();
        check(
            matches!(
                e,
                Some(ClientError::Libvirt(LibvirtError::AgentNotConnected { .. }))
            ),
            || format!("client got {e:?}"),
        )?;
        let stderr = s.porthole_fails(SILENT_VM, &["ping"])?;
        check(
            stderr.contains("is not connected") && stderr.contains("running in the guest"),
            || format!("cli said {stderr:?}"),
        )
    });

    suite.case("errors: a domain without the agent channel", |s| {
        let mut c = s.client(NO_CHANNEL_VM)?;
        let e = c.ping().map(drop).err();
        check(
            matches!(
                e,
                Some(ClientError::Libvirt(
                    LibvirtError::AgentNotConfigured { .. }
                ))
            ),
            || format!("client got {e:?}"),
        )?;
        let stderr = s.porthole_fails(NO_CHANNEL_VM, &["ping"])?;
        check(stderr.contains("org.qemu.guest_agent.0"), || {
            format!("cli said {stderr:?}")
        })
    });

    suite.case("errors: virsh missing names its package", |s| {
        let out = Command::new(&s.cli)
            .env("PATH", "/nonexistent")
            .args(["agent", "--domain", AGENT_VM, "ping"])
            .output()
            .map_err(err)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        check(
            !out.status.success() && stderr.contains("libvirt-clients"),
            || format!("cli said {stderr:?}"),
        )
    });

    suite.case("errors: a domain that is not running", |s| {
        let stderr = s.porthole_fails(OFF_VM, &["info"])?;
        check(stderr.contains("is not running"), || {
            format!("cli said {stderr:?}")
        })
    });

    suite.case("errors: the agent's own error comes back as one", |s| {
        let mut c = s.client(AGENT_VM)?;
        let e = c.file_open("/nonexistent/px", Some("r")).err();
        check(matches!(&e, Some(ClientError::Agent { .. })), || {
            format!("{e:?}")
        })?;
        let e = c
            .call(
                "guest-no-such-command",
                serde_json::Value::Null,
                Duration::from_secs(30),
            )
            .err();
        check(
            e.as_ref().is_some_and(ClientError::is_command_not_found),
            || format!("{e:?}"),
        )
    });

    // Last: it ends the domain. libvirt gets no reply to guest-shutdown; silence is success.
    suite.case("cli: shutdown ends the domain", |s| {
        s.porthole_ok(&["shutdown"])?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // A transient domain is gone once QEMU exits.
            if s.libvirtd.virsh(&["domstate", AGENT_VM]).is_err() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{AGENT_VM} still exists 60s after guest-shutdown\n{}",
                    s.libvirtd.console(AGENT_VM)
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });

    let failures = std::mem::take(&mut suite.failures);
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}\n--- libvirtd log ---\n{}",
        failures.len(),
        failures.join("\n"),
        suite.libvirtd.log()
    );
}
