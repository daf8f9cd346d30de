//! The CPU rate of the payload's job when it is nested in a capped container job.
//!
//! A job's CPU rate is a share, in 1/10000, of the machine's processors — but a job nested in
//! another is held to its share of the parent's: with the container job capped at 25 % (hcsshim
//! caps it whenever the pod has a CPU limit), a payload job at 50 % gets 12.5 % of the machine.
//! So the rate the task asks for is divided by the parent's, and when the parent's cap is below
//! the request the payload gets the whole of it, and the result says so.

/// The rate to set on the payload's job, and what to tell the user when the parent holds it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedRate {
    /// `CpuRate` for the payload's job, 1..=10000.
    pub rate: u32,
    /// Set when the container's own cap is lower than the request.
    pub note: Option<String>,
}

fn cores(rate: u64, cpus: u64) -> String {
    let millis = rate * cpus / 10;
    format!("{}.{:02} cores", millis / 1000, (millis % 1000) / 10)
}

/// The rate for `millis` millicores on `cpus` processors inside a parent job capped at
/// `parent_rate` (1/10000 of the machine), or not capped.
pub fn nested_rate(millis: u64, cpus: u64, parent_rate: Option<u32>) -> NestedRate {
    let cpus = cpus.max(1);
    // The share of the whole machine the task asks for.
    let wanted = (millis * 10 / cpus).clamp(1, 10_000);
    let Some(parent) = parent_rate.map(u64::from).filter(|p| (1..10_000).contains(p)) else {
        return NestedRate { rate: wanted as u32, note: None };
    };
    let rate = (wanted * 10_000).div_ceil(parent).clamp(1, 10_000) as u32;
    let note = (wanted > parent).then(|| {
        format!(
            "the container's own CPU cap ({}) is lower than limits.cpu ({}m): the payload gets {}; raise the pod's CPU limit or lower limits.cpu",
            cores(parent, cpus),
            millis,
            cores(parent, cpus)
        )
    });
    NestedRate { rate, note }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_gets_what_it_asked_for_inside_a_capped_container() {
        // 4 processors, 1 core asked: 25 % of the machine.
        assert_eq!(nested_rate(1000, 4, None), NestedRate { rate: 2500, note: None });
        // The container is capped at 2 cores (50 %): a quarter of the machine is half of that.
        assert_eq!(nested_rate(1000, 4, Some(5000)), NestedRate { rate: 5000, note: None });
        // Capped at exactly what is asked: all of the parent's share.
        assert_eq!(nested_rate(1000, 4, Some(2500)).rate, 10_000);
        // Not capped (10000 or no rate control): the plain share.
        assert_eq!(nested_rate(500, 2, Some(10_000)).rate, 2500);
    }

    #[test]
    fn a_parent_cap_below_the_request_is_said_and_the_payload_gets_all_of_it() {
        let capped = nested_rate(2000, 4, Some(2500));
        assert_eq!(capped.rate, 10_000);
        let note = capped.note.expect("a note");
        assert!(
            note.contains("container's own CPU cap (1.00 cores) is lower than limits.cpu (2000m)"),
            "{note}"
        );
    }

    #[test]
    fn tiny_requests_and_many_processors_stay_in_range() {
        assert_eq!(nested_rate(1, 256, None).rate, 1);
        assert_eq!(nested_rate(1, 256, Some(1)).rate, 10_000);
        assert_eq!(nested_rate(64_000, 8, None).rate, 10_000);
    }
}
