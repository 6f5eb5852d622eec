//! guest-porthole-telemetry: one snapshot of CPU, memory, swap, load, uptime, filesystems and
//! network counters, from /proc and statvfs.
//!
//! CPU times are raw jiffies (USER_HZ ticks, given as `ticks-per-second`) so a host computes
//! utilisation from two snapshots. Filesystems are guest-get-fsinfo's block-device mounts;
//! interfaces are /proc/net/dev's counters, parsed by the network module.

use super::fsinfo::{block_mounts, parse_mountinfo};
use super::network::parse_net_dev;
use super::sysfs::{leading_numbers, os_error, read_text, TABLE_LIMIT};
use super::{blocking, NoArgs};
use crate::agent::Agent;
use porthole_proto::CommandError;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Names of /proc/stat's CPU columns, in order.
const CPU_COLUMNS: [&str; 10] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guest-nice",
];

pub async fn telemetry(_agent: Arc<Agent>, _args: NoArgs) -> Result<Value, CommandError> {
    blocking(|| {
        let read =
            |path: &str| read_text(Path::new(path), TABLE_LIMIT).map_err(|e| os_error(path, &e));
        let meminfo = parse_meminfo(&read("/proc/meminfo")?);
        let kib = |key: &str| meminfo.get(key).copied().unwrap_or(0).saturating_mul(1024);
        let (total, available) = (kib("MemTotal"), kib("MemAvailable"));
        let (swap_total, swap_free) = (kib("SwapTotal"), kib("SwapFree"));
        let load = super::cpu::parse_loadavg(&read("/proc/loadavg")?);
        let uptime = read("/proc/uptime")?
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<f64>().ok());
        Ok(json!({
            "cpu": parse_cpu(&read("/proc/stat")?, clock_ticks()),
            "memory": {
                "total-bytes": total,
                "available-bytes": available,
                "used-bytes": total.saturating_sub(available),
                "buffers-bytes": kib("Buffers"),
                "cached-bytes": kib("Cached"),
            },
            "swap": {
                "total-bytes": swap_total,
                "free-bytes": swap_free,
                "used-bytes": swap_total.saturating_sub(swap_free),
            },
            "load": load.map(|l| json!({"1m": l.load1m, "5m": l.load5m, "15m": l.load15m})),
            "uptime-seconds": uptime,
            "filesystems": filesystems(&read("/proc/self/mountinfo")?),
            "interfaces": interfaces(&read("/proc/net/dev")?),
        }))
    })
    .await
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// /proc/stat's `cpu` (total) and `cpuN` lines as named jiffy counts.
pub fn parse_cpu(text: &str, ticks: u64) -> Value {
    let mut total = Value::Null;
    let mut per_cpu = Vec::new();
    for line in text.lines() {
        let mut tokens = line.split_whitespace();
        let Some(name) = tokens.next().and_then(|n| n.strip_prefix("cpu")) else {
            continue;
        };
        let values = leading_numbers(tokens.take(CPU_COLUMNS.len()));
        let mut counts: Map<String, Value> = CPU_COLUMNS
            .iter()
            .zip(&values)
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        if name.is_empty() {
            total = Value::Object(counts);
        } else if let Ok(cpu) = name.parse::<u32>() {
            counts.insert("cpu".into(), json!(cpu));
            per_cpu.push(Value::Object(counts));
        }
    }
    json!({
        "count": per_cpu.len(),
        "ticks-per-second": ticks,
        "total-jiffies": total,
        "per-cpu-jiffies": per_cpu,
    })
}

/// /proc/meminfo: `Key: value kB` → key → value (kB).
pub fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some((key.trim().to_string(), value))
        })
        .collect()
}

#[allow(clippy::unnecessary_cast)] // the casts are needed where the fields are 32-bit
fn filesystems(mountinfo: &str) -> Vec<Value> {
    block_mounts(parse_mountinfo(mountinfo))
        .into_iter()
        .filter_map(|m| {
            let st = nix::sys::statvfs::statvfs(m.dir.as_str()).ok()?;
            let frsize = st.fragment_size() as u64;
            let blocks = st.blocks() as u64;
            let free = st.blocks_free() as u64;
            Some(json!({
                "mountpoint": m.dir,
                "type": m.fstype,
                "device": m.source,
                "total-bytes": blocks.saturating_mul(frsize),
                "used-bytes": blocks.saturating_sub(free).saturating_mul(frsize),
                "available-bytes": (st.blocks_available() as u64).saturating_mul(frsize),
            }))
        })
        .collect()
}

fn interfaces(net_dev: &str) -> Vec<Value> {
    let stats: BTreeMap<_, _> = parse_net_dev(net_dev).into_iter().collect();
    stats
        .into_iter()
        .map(|(name, s)| {
            json!({
                "name": name,
                "rx-bytes": s.rx_bytes, "rx-packets": s.rx_packets,
                "rx-errs": s.rx_errs, "rx-dropped": s.rx_dropped,
                "tx-bytes": s.tx_bytes, "tx-packets": s.tx_packets,
                "tx-errs": s.tx_errs, "tx-dropped": s.tx_dropped,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lines() {
        let text = "cpu  10 1 5 100 2 0 1 0 0 0\ncpu0 6 1 3 50 1 0 1 0 0 0\ncpu1 4 0 2 50\ncpufreq x\nintr 5\n";
        let cpu = parse_cpu(text, 100);
        assert_eq!(cpu["count"], json!(2));
        assert_eq!(cpu["total-jiffies"]["idle"], json!(100));
        assert_eq!(cpu["per-cpu-jiffies"][1]["user"], json!(4));
        assert_eq!(cpu["per-cpu-jiffies"][1].get("iowait"), None);
    }

    #[test]
    fn meminfo_lines() {
        let m =
            parse_meminfo("MemTotal:  1000 kB\nMemAvailable: 400 kB\nHugePages_Total: 0\nbad\n");
        assert_eq!(m.get("MemTotal"), Some(&1000));
        assert_eq!(m.get("HugePages_Total"), Some(&0));
        assert_eq!(m.len(), 3);
    }
}
