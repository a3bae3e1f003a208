//! A background ping whose losses are counted: the tests that claim "no ping lost" (live
//! encapsulation switches, calico-node restarts) assert on its tally.
//!
//! It runs `ping -D -O -n -i <interval>`: every line carries a timestamp and an
//! `icmp_seq`, answers say `bytes from`, and `-O` reports each request still unanswered
//! when the next one goes out. A request counts as lost when its sequence number lies
//! between the first request of the counted span and the last answered one and no answer
//! for it ever came, so a request still in flight when the ping stops is not a loss, and a
//! late answer is not one either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::netns::{Daemon, Netns, wait_until};

/// A background ping from a namespace; stopped (and read) by [`Pinger::stop`], killed on
/// drop.
pub struct Pinger {
    daemon: Option<Daemon>,
    log: PathBuf,
}

/// What a stopped [`Pinger`] saw from a given instant on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PingTally {
    /// Requests sent in the span (up to the last answered one).
    pub sent: u64,
    /// Requests of the span that were never answered.
    pub lost: u64,
    /// Requests of the span that were answered.
    pub answered: u64,
    /// Milliseconds from the instant to the first answer after it.
    pub first_answer_ms: Option<u64>,
}

/// Seconds since the epoch, as `ping -D` prints them: the instant a tally starts from.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One line of `ping -D -O`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Line {
    at: f64,
    seq: u64,
    answered: bool,
}

fn parse_line(line: &str) -> Option<Line> {
    let at = line.strip_prefix('[')?.split(']').next()?.parse().ok()?;
    let seq = line
        .split("icmp_seq=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Line {
        at,
        seq,
        answered: line.contains("bytes from"),
    })
}

/// The tally of `lines` from `since` on (pure, so it is tested without a ping).
fn tally(lines: &[Line], since: f64) -> PingTally {
    let answered: BTreeMap<u64, f64> = lines
        .iter()
        .filter(|l| l.answered)
        .map(|l| (l.seq, l.at))
        .collect();
    let first = lines.iter().filter(|l| l.at >= since).map(|l| l.seq).min();
    let last_answered = first.and_then(|f| answered.range(f..).next_back().map(|(s, _)| *s));
    let (Some(first), Some(last)) = (first, last_answered) else {
        // Nothing answered in the span: every request that shows up is lost.
        let seen: BTreeSet<u64> = lines
            .iter()
            .filter(|l| l.at >= since)
            .map(|l| l.seq)
            .collect();
        return PingTally {
            sent: seen.len() as u64,
            lost: seen.len() as u64,
            ..PingTally::default()
        };
    };
    let answered_in_span = answered.range(first..=last).count() as u64;
    let sent = last - first + 1;
    let first_answer_ms = answered
        .values()
        .copied()
        .filter(|at| *at >= since)
        .reduce(f64::min)
        .map(|at| ((at - since) * 1000.0).round() as u64);
    PingTally {
        sent,
        lost: sent - answered_in_span.min(sent),
        answered: answered_in_span,
        first_answer_ms,
    }
}

impl Pinger {
    /// Starts pinging `dst` from `ns` every `interval` (ping's `-i`, e.g. "0.01").
    pub fn start(ns: &Netns, dst: &str, interval: &str, log: PathBuf) -> Pinger {
        let _ = std::fs::remove_file(&log);
        let daemon = ns
            .spawn(
                "ping",
                &["-D", "-O", "-n", "-i", interval, dst],
                &BTreeMap::new(),
                &log,
            )
            .ok();
        Pinger { daemon, log }
    }

    fn lines(&self) -> Vec<Line> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(parse_line)
            .collect()
    }

    /// How many requests have been answered so far.
    pub fn answers(&self) -> usize {
        self.lines().iter().filter(|l| l.answered).count()
    }

    /// Waits (at most `timeout`) until `more` answers beyond those seen at the call arrive.
    pub fn wait_answers(&self, more: usize, timeout: Duration) -> bool {
        let base = self.answers();
        wait_until(timeout, || self.answers() >= base + more)
    }

    /// Whether ping still runs, and the last lines it printed (for failure messages).
    pub fn describe(&mut self) -> String {
        let running = self.daemon.as_mut().is_some_and(Daemon::is_running);
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "ping running={running}, last lines:\n{}",
            lines[lines.len().saturating_sub(5)..].join("\n")
        )
    }

    /// Stops the ping and counts what happened from `since` (see [`unix_now`]) on.
    pub fn stop(mut self, since: f64) -> PingTally {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(2));
        }
        tally(&self.lines(), since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at: f64, seq: u64, answered: bool) -> Line {
        Line { at, seq, answered }
    }

    #[test]
    fn ping_lines_are_read_with_their_timestamp_and_sequence() {
        let answer = "[1700000000.123456] 64 bytes from 10.0.0.2: icmp_seq=7 ttl=63 time=0.1 ms";
        assert_eq!(
            parse_line(answer),
            Some(line(1_700_000_000.123_456, 7, true))
        );
        let missing = "[1700000000.5] no answer yet for icmp_seq=8";
        assert_eq!(parse_line(missing), Some(line(1_700_000_000.5, 8, false)));
        assert_eq!(
            parse_line("PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data."),
            None
        );
    }

    #[test]
    fn a_request_never_answered_is_lost_even_without_a_line_of_its_own() {
        // 3 has a "no answer yet" line, 4 has no line at all (a send error), 6 is in flight.
        let lines = [
            line(1.0, 1, true),
            line(2.0, 2, true),
            line(3.1, 3, false),
            line(5.0, 5, true),
            line(6.0, 6, false),
        ];
        let t = tally(&lines, 0.0);
        assert_eq!((t.sent, t.lost, t.answered), (5, 2, 3));
    }

    #[test]
    fn a_late_answer_is_not_a_loss_and_the_span_starts_at_since() {
        let lines = [
            line(1.0, 1, false),
            line(2.0, 2, false),
            line(2.5, 2, true),
            line(3.0, 3, true),
        ];
        let t = tally(&lines, 1.5);
        assert_eq!((t.sent, t.lost, t.answered), (2, 0, 2));
        assert_eq!(t.first_answer_ms, Some(1000));
    }

    #[test]
    fn nothing_answered_means_everything_lost() {
        let t = tally(&[line(1.0, 1, false), line(2.0, 2, false)], 0.0);
        assert_eq!((t.sent, t.lost, t.answered), (2, 2, 0));
        // Answers only before the span do not count.
        let t = tally(&[line(1.0, 1, true), line(2.0, 2, false)], 1.5);
        assert_eq!((t.sent, t.lost, t.answered), (1, 1, 0));
    }
}
