//! CPUs: guest-get-vcpus / guest-set-vcpus (sysfs `cpuN/online`), guest-get-cpustats
//! (/proc/stat) and guest-get-load (/proc/loadavg), with qemu-ga 7.2's Linux semantics.
//!
//! qemu-ga lists `cpuN` entries in directory order (not numerically) and reports a CPU without
//! an `online` file (the boot CPU, usually) as online and not offlinable. guest-set-vcpus
//! applies the entries in order, stops at the first failure and returns how many succeeded;
//! only a failure of the very first entry is an error.

use super::sysfs::{atoi, leading_numbers, os_error, read_text, TABLE_LIMIT};
use super::{blocking, NoArgs};
use crate::agent::Agent;
use porthole_proto::commands::{
    CpuStats, LinuxCpuStats, LoadAverage, LogicalProcessor, SetVcpusArgs,
};
use porthole_proto::CommandError;
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

pub const CPU_DIR: &str = "/sys/devices/system/cpu";
/// More entries than any kernel has CPUs (NR_CPUS tops out at 8192): a request beyond this is
/// refused rather than walked.
pub const MAX_VCPUS: usize = 16384;

pub async fn get_vcpus(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| super::to_value(list_vcpus(Path::new(CPU_DIR))?)).await
}

pub async fn set_vcpus(_agent: Arc<Agent>, args: SetVcpusArgs) -> Result<Value, CommandError> {
    blocking(move || Ok(Value::from(apply_vcpus(Path::new(CPU_DIR), &args.vcpus)?))).await
}

/// Every `cpuN` under `dir`, in directory order.
pub fn list_vcpus(dir: &Path) -> Result<Vec<LogicalProcessor>, CommandError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| os_error(format!("failed to list entries: {}", dir.display()), &e))?;
    let mut vcpus = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| os_error(format!("readdir(\"{}\")", dir.display()), &e))?;
        let name = entry.file_name();
        let Some(id) = cpu_number(&name.to_string_lossy()) else {
            continue;
        };
        let mut vcpu = LogicalProcessor {
            logical_id: id,
            online: false,
            can_offline: Some(false),
        };
        transfer(dir, &mut vcpu, Direction::Read)?;
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}

/// `cpu<N>` as sscanf("cpu%ld") reads it: `cpufreq` and `cpuidle` are not CPUs.
fn cpu_number(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("cpu")?;
    let digits = rest.strip_prefix(['-', '+']).unwrap_or(rest);
    digits
        .bytes()
        .next()
        .filter(u8::is_ascii_digit)
        .map(|_| atoi(rest))
}

/// Applies `vcpus` in order; returns how many were processed before the first failure, which
/// is an error only when nothing was processed.
pub fn apply_vcpus(dir: &Path, vcpus: &[LogicalProcessor]) -> Result<i64, CommandError> {
    if vcpus.len() > MAX_VCPUS {
        return Err(CommandError::invalid_params(format!(
            "too many vcpus: {} (at most {MAX_VCPUS})",
            vcpus.len()
        )));
    }
    let mut processed = 0i64;
    for vcpu in vcpus {
        let mut vcpu = *vcpu;
        match transfer(dir, &mut vcpu, Direction::Write) {
            Ok(()) => processed += 1,
            Err(e) if processed == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(processed)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// sysfs → `vcpu`.
    Read,
    /// `vcpu` → sysfs.
    Write,
}

/// Reads a CPU's state into `vcpu` or writes `vcpu.online` to it, with qemu-ga's error texts.
fn transfer(
    dir: &Path,
    vcpu: &mut LogicalProcessor,
    direction: Direction,
) -> Result<(), CommandError> {
    let dirpath = format!("{}/cpu{}/", dir.display(), vcpu.logical_id);
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(&dirpath)
        .map_err(|e| os_error(format!("open(\"{dirpath}\")"), &e))?;
    let file_path = format!("{dirpath}/online");
    let file = match direction {
        Direction::Read => File::open(&file_path),
        Direction::Write => OpenOptions::new().read(true).write(true).open(&file_path),
    };
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return match direction {
                Direction::Read => {
                    vcpu.online = true;
                    vcpu.can_offline = Some(false);
                    Ok(())
                }
                Direction::Write if !vcpu.online => Err(CommandError::failed(format!(
                    "logical processor #{} can't be offlined",
                    vcpu.logical_id
                ))),
                // Re-onlining a CPU that cannot go offline: nothing to do.
                Direction::Write => Ok(()),
            };
        }
        Err(e) => return Err(os_error(format!("open(\"{file_path}\")"), &e)),
    };
    let mut status = [b'0'];
    file.read_at(&mut status, 0)
        .map_err(|e| os_error(format!("pread(\"{file_path}\")"), &e))?;
    let online = status[0] != b'0';
    match direction {
        Direction::Read => {
            vcpu.online = online;
            vcpu.can_offline = Some(true);
        }
        Direction::Write if vcpu.online != online => {
            let new = if vcpu.online { b"1" } else { b"0" };
            file.write_at(new, 0)
                .map_err(|e| os_error(format!("pwrite(\"{file_path}\")"), &e))?;
        }
        Direction::Write => {}
    }
    Ok(())
}

pub async fn get_cpustats(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| {
        let path = "/proc/stat";
        let text = read_text(Path::new(path), TABLE_LIMIT)
            .map_err(|e| os_error(format!("open(\"{path}\")"), &e))?;
        super::to_value(parse_cpustats(&text, clock_ticks()))
    })
    .await
}

/// The kernel's USER_HZ, the unit of /proc/stat.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// The per-CPU `cpuN` lines of /proc/stat, times converted to milliseconds. Which optional
/// members appear follows the number of columns; a `cpuN` line with fewer than four ends the
/// list (qemu-ga logs and stops there).
pub fn parse_cpustats(text: &str, ticks: u64) -> Vec<CpuStats> {
    let ms = |t: u64| t.wrapping_mul(1000) / ticks.max(1);
    let mut out = Vec::new();
    for line in text.lines() {
        let mut tokens = line.split_whitespace();
        let Some(name) = tokens.next() else { continue };
        let Some(number) = name.strip_prefix("cpu").filter(|n| !n.is_empty()) else {
            continue;
        };
        let v = leading_numbers(tokens.take(10));
        // `i` in qemu-ga counts the name too.
        let fields = v.len() + 1;
        if fields < 5 {
            break;
        }
        let at = |i: usize| v.get(i).copied().map(ms);
        let has = |n: usize| fields > n;
        out.push(CpuStats::Linux(LinuxCpuStats {
            cpu: atoi(number),
            user: at(0).unwrap_or(0),
            nice: at(1).unwrap_or(0),
            system: at(2).unwrap_or(0),
            idle: at(3).unwrap_or(0),
            iowait: has(5).then(|| at(4).unwrap_or(0)),
            irq: has(6).then(|| at(5).unwrap_or(0)),
            // qemu-ga reports softirq together with irq, even from a 7-column line.
            softirq: has(6).then(|| at(6).unwrap_or(0)),
            steal: has(8).then(|| at(7).unwrap_or(0)),
            guest: has(9).then(|| at(8).unwrap_or(0)),
            guestnice: has(10).then(|| at(9).unwrap_or(0)),
        }));
    }
    out
}

pub async fn get_load(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| {
        let text = read_text(Path::new("/proc/loadavg"), 4096)
            .map_err(|e| os_error("cannot query load average", &e))?;
        let load = parse_loadavg(&text)
            .ok_or_else(|| CommandError::failed("cannot query load average"))?;
        super::to_value(load)
    })
    .await
}

pub fn parse_loadavg(text: &str) -> Option<LoadAverage> {
    let mut values = text.split_whitespace().map(|t| t.parse::<f64>().ok());
    Some(LoadAverage {
        load1m: values.next()??,
        load5m: values.next()??,
        load15m: values.next()??,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_names() {
        assert_eq!(cpu_number("cpu12"), Some(12));
        assert_eq!(cpu_number("cpufreq"), None);
        assert_eq!(cpu_number("cpu"), None);
        assert_eq!(cpu_number("online"), None);
    }

    #[test]
    fn cpustats_columns() {
        let text = "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 100 0 200 300 1 2 3 4 5 6\n\
                    cpu1 100 0 200 300 1 2\nintr 5 6\ncpu2 1 2\ncpu3 1 2 3 4 5 6 7 8 9 10\n";
        let stats = parse_cpustats(text, 100);
        assert_eq!(stats.len(), 2, "a short cpuN line ends the list");
        let CpuStats::Linux(c0) = &stats[0];
        assert_eq!((c0.cpu, c0.user, c0.system, c0.idle), (0, 1000, 2000, 3000));
        assert_eq!(c0.guestnice, Some(60));
        let CpuStats::Linux(c1) = &stats[1];
        assert_eq!((c1.irq, c1.softirq, c1.steal), (Some(20), Some(0), None));
    }

    /// A fake `/sys/devices/system/cpu`: cpu0 without `online`, cpu1 online, cpu2 offline.
    fn fake_cpus() -> std::io::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir()?;
        for (cpu, online) in [("cpu0", None), ("cpu1", Some("1\n")), ("cpu2", Some("0\n"))] {
            std::fs::create_dir(dir.path().join(cpu))?;
            if let Some(state) = online {
                std::fs::write(dir.path().join(cpu).join("online"), state)?;
            }
        }
        std::fs::create_dir(dir.path().join("cpufreq"))?;
        Ok(dir)
    }

    fn cpu(id: i64, online: bool) -> LogicalProcessor {
        LogicalProcessor {
            logical_id: id,
            online,
            can_offline: None,
        }
    }

    #[test]
    fn lists_fake_cpus() -> Result<(), Box<dyn std::error::Error>> {
        let dir = fake_cpus()?;
        let mut list = list_vcpus(dir.path())?;
        list.sort_by_key(|c| c.logical_id);
        let got: Vec<_> = list
            .iter()
            .map(|c| (c.logical_id, c.online, c.can_offline))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, true, Some(false)),
                (1, true, Some(true)),
                (2, false, Some(true))
            ]
        );
        Ok(())
    }

    #[test]
    fn sets_fake_cpus_with_partial_success() -> Result<(), Box<dyn std::error::Error>> {
        let dir = fake_cpus()?;
        let root = dir.path();
        let online = |n: &str| std::fs::read_to_string(root.join(n).join("online"));
        // cpu2 goes online, cpu1 offline, then cpu9 fails: two processed, no error.
        let n = apply_vcpus(
            root,
            &[cpu(2, true), cpu(1, false), cpu(9, true), cpu(1, true)],
        )?;
        assert_eq!(n, 2);
        assert!(online("cpu2")?.starts_with('1'));
        assert!(
            online("cpu1")?.starts_with('0'),
            "the entry after the failure is not applied"
        );
        // The first entry failing is the error, with qemu-ga's text.
        let e = apply_vcpus(root, &[cpu(0, false), cpu(1, true)]).err();
        assert_eq!(
            e.map(|e| e.desc),
            Some("logical processor #0 can't be offlined".to_string())
        );
        assert_eq!(
            apply_vcpus(root, &[cpu(0, true)])?,
            1,
            "re-onlining cpu0 is a no-op"
        );
        let e = apply_vcpus(root, &[cpu(-3, true)]).err().map(|e| e.desc);
        assert_eq!(
            e,
            Some(format!(
                "open(\"{}/cpu-3/\"): No such file or directory",
                root.display()
            ))
        );
        assert_eq!(apply_vcpus(root, &[])?, 0);
        let too_many = vec![cpu(1, true); MAX_VCPUS + 1];
        assert!(apply_vcpus(root, &too_many).is_err());
        Ok(())
    }

    #[test]
    fn loadavg() {
        let l = parse_loadavg("4.99 2.13 0.93 5/133 24068\n");
        assert_eq!(l.map(|l| l.load5m), Some(2.13));
        assert!(parse_loadavg("1.0 x").is_none());
    }
}
