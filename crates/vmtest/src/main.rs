//! `porthole-vm`: builds the test image, boots it, waits for the agent and prints where to reach
//! it; then keeps the VM running until the guest powers off or standard input closes (so a
//! script that holds our stdin open stops the VM just by exiting).
//!
//!     porthole-vm [--no-vsock]

use porthole_vmtest::{Vm, VmConfig};
use std::io::Read;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

fn main() -> ExitCode {
    let vsock = !std::env::args().any(|a| a == "--no-vsock");
    match run(vsock) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("porthole-vm: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(vsock: bool) -> Result<(), porthole_vmtest::VmError> {
    let config = VmConfig {
        vsock,
        ..VmConfig::default()
    };
    let mut vm = Vm::start(config)?;
    let booted = vm.wait_for_agent()?;
    println!("accel={}", vm.accel);
    println!("boot-seconds={:.1}", booted.as_secs_f64());
    println!("qga-socket={}", vm.qga_socket().display());
    println!("porthole-socket={}", vm.porthole_socket().display());
    if let Some(path) = vm.hybrid_vsock_socket() {
        println!(
            "hybrid-vsock={}:{}",
            path.display(),
            porthole_vmtest::AGENT_VSOCK_PORT
        );
    }
    println!("console-log={}", vm.dir().join("console.log").display());
    println!("ready");

    let (eof_tx, eof_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        let _ = eof_tx.send(());
    });
    loop {
        if let Some(status) = vm.wait_exit(Duration::from_millis(200)) {
            eprintln!("porthole-vm: QEMU exited ({status})");
            return Ok(());
        }
        if eof_rx.try_recv().is_ok() {
            eprintln!("porthole-vm: standard input closed; stopping the VM");
            vm.stop();
            return Ok(());
        }
    }
}
