//! Figures: samples with median and p90, the table the benchmark prints, the machine it
//! ran on, and daemons' resident memory.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use lab::Netns;
use lab::bins::bin;

/// Latency samples of one metric, in milliseconds; signed, since two parallel paths can
/// finish in either order.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
}

impl Samples {
    /// Records one duration.
    pub fn push(&mut self, d: Duration) {
        self.values.push(d.as_secs_f64() * 1000.0);
    }

    /// Records `to - from`, negative when `to` came first.
    pub fn push_between(&mut self, from: Instant, to: Instant) {
        let ms = match to.checked_duration_since(from) {
            Some(d) => d.as_secs_f64(),
            None => -from.duration_since(to).as_secs_f64(),
        };
        self.values.push(ms * 1000.0);
    }

    /// The `q` quantile (nearest rank), `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
        v.get(rank - 1).copied()
    }

    /// `median (p90) ms n=<samples>`.
    pub fn cell(&self) -> String {
        match (self.quantile(0.5), self.quantile(0.9)) {
            (Some(m), Some(p)) => format!("{} ({}) ms n={}", ms(m), ms(p), self.values.len()),
            _ => "-".to_string(),
        }
    }
}

/// Milliseconds with precision that suits the magnitude.
pub fn ms(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

/// One printed row: a metric, our figure, BIRD's, and their ratio when both exist.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub metric: String,
    pub ours: String,
    pub bird: String,
    pub ratio: String,
}

impl Row {
    /// A latency row comparing medians.
    pub fn latency(metric: &str, ours: &Samples, bird: Option<&Samples>) -> Row {
        let ratio = match (ours.quantile(0.5), bird.and_then(|b| b.quantile(0.5))) {
            (Some(o), Some(b)) if o > 0.0 && b > 0.0 => ratio(o / b),
            _ => "-".to_string(),
        };
        Row {
            metric: metric.to_string(),
            ours: ours.cell(),
            bird: bird.map_or_else(|| "n/a".to_string(), Samples::cell),
            ratio,
        }
    }
}

/// `2.50x`, or `1/250x` when ours is far smaller.
fn ratio(r: f64) -> String {
    if r >= 0.1 || r == 0.0 {
        format!("{r:.2}x")
    } else {
        format!("1/{:.0}x", 1.0 / r)
    }
}

/// The rows as a Markdown table (also readable as printed text).
pub fn table(rows: &[Row]) -> String {
    let header = Row {
        metric: "metric".into(),
        ours: "calico-rs median (p90)".into(),
        bird: "BIRD 2 median (p90)".into(),
        ratio: "ratio (ours/BIRD)".into(),
    };
    let w = |f: fn(&Row) -> &str| {
        rows.iter()
            .chain([&header])
            .map(|r| f(r).len())
            .max()
            .unwrap_or(0)
    };
    let widths = [
        w(|r| &r.metric),
        w(|r| &r.ours),
        w(|r| &r.bird),
        w(|r| &r.ratio),
    ];
    let line = |r: &Row| {
        format!(
            "| {:<a$} | {:<b$} | {:<c$} | {:<d$} |\n",
            r.metric,
            r.ours,
            r.bird,
            r.ratio,
            a = widths[0],
            b = widths[1],
            c = widths[2],
            d = widths[3]
        )
    };
    let mut out = line(&header);
    out.push_str(&format!(
        "|{}|{}|{}|{}|\n",
        "-".repeat(widths[0] + 2),
        "-".repeat(widths[1] + 2),
        "-".repeat(widths[2] + 2),
        "-".repeat(widths[3] + 2)
    ));
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// CPU model, cores, kernel, load and tool versions.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = read_trim("/proc/sys/kernel/osrelease");
    let bird = command_line("bird", &["--version"]);
    format!(
        "{cpu}, {cores} cores, kernel {kernel}, {bird}, load average {}",
        load()
    )
}

/// The 1/5/15-minute load averages.
pub fn load() -> String {
    read_trim("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_else(|_| format!("{program}: not found"))
}

/// Memory of one process, in KiB, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// VmRSS: everything resident, the file pages of the binary and its libraries too
    /// (shared by every process running them).
    pub rss: u64,
    /// VmHWM: the peak of VmRSS.
    pub hwm: u64,
    /// RssAnon: what the process holds privately (heap, stacks).
    pub anon: u64,
}

/// [`Memory`] of every process named `comm` in namespace `ns`.
pub fn memory_of(ns: &Netns, comm: &str) -> Vec<Memory> {
    let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "pids", ns.name()])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|pid| read_trim(&format!("/proc/{pid}/comm")) == comm)
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            Some(Memory {
                rss: field("VmRSS:")?,
                hwm: field("VmHWM:")?,
                anon: field("RssAnon:")?,
            })
        })
        .collect()
}

/// `median (max)` MiB of one column of per-daemon memory figures.
pub fn memory_cell(kib: &[u64]) -> String {
    let mut v = kib.to_vec();
    v.sort_unstable();
    match (v.get(v.len().saturating_sub(1) / 2), v.last()) {
        (Some(m), Some(max)) => format!(
            "{:.1} ({:.1}) MiB n={}",
            *m as f64 / 1024.0,
            *max as f64 / 1024.0,
            v.len()
        ),
        _ => "-".to_string(),
    }
}

/// The ratio of two memory medians.
pub fn memory_ratio(ours: &[u64], bird: &[u64]) -> String {
    let median = |kib: &[u64]| {
        let mut v = kib.to_vec();
        v.sort_unstable();
        v.get(v.len().saturating_sub(1) / 2).copied()
    };
    match (median(ours), median(bird)) {
        (Some(o), Some(b)) if b > 0 => ratio(o as f64 / b as f64),
        _ => "-".to_string(),
    }
}

/// The binaries the labs run; refuses debug builds (their figures mean little).
pub fn release_binaries(allow_debug: bool) -> Result<String> {
    let mut lines = Vec::new();
    for name in ["calico-node", "calico", "calico-ipam"] {
        let path = bin(name)?;
        let release = path.components().any(|c| c.as_os_str() == "release");
        if !release && !allow_debug {
            bail!(
                "{} is a debug build: run `cargo build --release --workspace --bins` first \
                 (or pass --allow-debug)",
                path.display()
            );
        }
        lines.push(path.display().to_string());
    }
    Ok(lines.join(", "))
}
