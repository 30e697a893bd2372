//! `--timings`: where the time of a command went, phase by phase.

use std::time::{Duration, Instant};

/// Wall-clock time per phase, in the order the phases first ran; a phase
/// that runs several times (writing each node's bundle) adds up.
#[derive(Debug)]
pub struct Phases {
    start: Instant,
    last: Instant,
    spent: Vec<(&'static str, Duration)>,
}

impl Phases {
    /// Starts the clock.
    pub fn start() -> Phases {
        let now = Instant::now();
        Phases { start: now, last: now, spent: Vec::new() }
    }

    /// Charges the time since the previous mark to `phase`.
    pub fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        let elapsed = now - self.last;
        self.last = now;
        match self.spent.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, total)) => *total += elapsed,
            None => self.spent.push((phase, elapsed)),
        }
    }

    /// One line: `timings: read 0.412 s, lint 0.051 s, ..., total 1.020 s`.
    pub fn line(&self) -> String {
        let parts: Vec<String> =
            self.spent.iter().map(|(name, d)| format!("{name} {:.3} s", d.as_secs_f64())).collect();
        format!("timings: {}, total {:.3} s\n", parts.join(", "), (self.last - self.start).as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_phases_add_up_and_keep_their_first_place() {
        let mut phases = Phases::start();
        phases.mark("read");
        std::thread::sleep(Duration::from_millis(2));
        phases.mark("emit");
        phases.mark("write");
        std::thread::sleep(Duration::from_millis(2));
        phases.mark("emit");
        let names: Vec<&str> = phases.spent.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["read", "emit", "write"]);
        assert!(phases.spent[1].1 >= Duration::from_millis(4));
        let line = phases.line();
        assert!(line.starts_with("timings: read ") && line.contains(", emit ") && line.ends_with(" s\n"), "{line}");
    }
}
