//! Parsing of the unit-bearing values of the spec (durations, memory, CPU, counts or
//! percentages). The shapes are fixed by the formats in `format.rs`; these functions turn
//! a value that passed them into numbers the operator and the executor use.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Parses `1h30m`, `90s`, `2h`, … (hours, minutes, seconds, in that order, each at most once).
pub fn parse_duration(value: &str) -> Option<Duration> {
    if value.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = value;
    for (unit, seconds) in [('h', 3600u64), ('m', 60), ('s', 1)] {
        let Some(end) = rest.find(unit) else { continue };
        let digits = &rest[..end];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        total = total.checked_add(digits.parse::<u64>().ok()?.checked_mul(seconds)?)?;
        rest = &rest[end + 1..];
    }
    rest.is_empty().then_some(Duration::from_secs(total))
}

/// Parses a memory size of the `MEMORY` format (`512Mi`, `4Gi`) into bytes.
pub fn parse_memory(value: &str) -> Option<u64> {
    let (digits, unit) = value.split_at(value.len().checked_sub(2)?);
    let scale: u64 = match unit {
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(scale).filter(|&b| b > 0)
}

/// Parses a CPU amount of the `CPU` format (`500m`, `2`) into millicores.
pub fn parse_cpu(value: &str) -> Option<u64> {
    let millis = match value.strip_suffix('m') {
        Some(digits) => digits.parse::<u64>().ok()?,
        None => value.parse::<u64>().ok()?.checked_mul(1000)?,
    };
    (millis > 0).then_some(millis)
}

/// A count or a percentage of a total, as in `maxConcurrent: 5` or `maxFailures: "10%"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOrPercent {
    Count(u32),
    Percent(u32),
}

impl CountOrPercent {
    /// Reads an `IntOrString`: a non-negative integer, or a string `N%` with N in 0..=100.
    /// A string of digits without `%` is read as a count, as kubectl users write it both ways.
    pub fn parse(value: &IntOrString) -> Option<Self> {
        match value {
            IntOrString::Int(n) => u32::try_from(*n).ok().map(CountOrPercent::Count),
            IntOrString::String(s) => match s.strip_suffix('%') {
                Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                    digits.parse().ok().filter(|p| *p <= 100).map(CountOrPercent::Percent)
                }
                Some(_) => None,
                None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                    s.parse().ok().map(CountOrPercent::Count)
                }
                None => None,
            },
        }
    }

    /// The number of nodes out of `total`. Percentages round up, so `10%` of 5 nodes is 1,
    /// never 0 (a rollout that could never start is not what anyone means by 10%).
    pub fn of(self, total: u32) -> u32 {
        match self {
            CountOrPercent::Count(n) => n,
            CountOrPercent::Percent(p) => {
                let scaled = u64::from(total) * u64::from(p);
                u32::try_from(scaled.div_ceil(100)).unwrap_or(u32::MAX)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2h5s"), Some(Duration::from_secs(7205)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "h", "1d", "30", "30s1m", "1.5h", "-1s", "1hh"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn memory_and_cpu() {
        assert_eq!(parse_memory("512Mi"), Some(512 << 20));
        assert_eq!(parse_memory("4Gi"), Some(4 << 30));
        assert_eq!(parse_memory("0Mi"), None);
        assert_eq!(parse_memory("Mi"), None);
        assert_eq!(parse_memory("5"), None);
        assert_eq!(parse_cpu("500m"), Some(500));
        assert_eq!(parse_cpu("2"), Some(2000));
        assert_eq!(parse_cpu("0"), None);
        assert_eq!(parse_cpu("x"), None);
    }

    #[test]
    fn count_or_percent() {
        let p = |v: IntOrString| CountOrPercent::parse(&v);
        assert_eq!(p(IntOrString::Int(5)), Some(CountOrPercent::Count(5)));
        assert_eq!(p(IntOrString::Int(-1)), None);
        assert_eq!(p(IntOrString::String("25%".into())), Some(CountOrPercent::Percent(25)));
        assert_eq!(p(IntOrString::String("7".into())), Some(CountOrPercent::Count(7)));
        for bad in ["101%", "%", "-5%", "five", "", "5 %"] {
            assert_eq!(p(IntOrString::String(bad.into())), None, "{bad}");
        }
        assert_eq!(CountOrPercent::Percent(10).of(5), 1);
        assert_eq!(CountOrPercent::Percent(25).of(20), 5);
        assert_eq!(CountOrPercent::Percent(30).of(20), 6);
        assert_eq!(CountOrPercent::Percent(0).of(20), 0);
        assert_eq!(CountOrPercent::Percent(100).of(7), 7);
        assert_eq!(CountOrPercent::Count(3).of(1000), 3);
    }
}
