//! When a rollout may start nodes: weekly maintenance windows and blackout dates in an IANA time
//! zone. The types are part of the CRDs; `Schedule::compile` checks what the schema cannot (that
//! the time zone exists, that a date is on the calendar) and `Compiled::at` answers, for an
//! instant, whether nodes may start and until or from when. Time zones come from jiff (the
//! system's zoneinfo, or the database built into the binary where the image has none).

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::format;
use crate::messages as msg;

/// When nodes may start. Nodes already running when a window closes or a blackout begins
/// finish; no new node starts until the next window opens.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// The IANA time zone the windows and dates are in, like `Europe/Berlin`. Default `UTC`.
    #[serde(default = "utc")]
    #[schemars(schema_with = "time_zone_schema")]
    pub time_zone: String,

    /// Weekly windows in which nodes may start. None: any time outside a blackout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 28))]
    pub windows: Vec<MaintenanceWindow>,

    /// Dates on which no node starts, whatever the windows say (holidays, change freezes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub blackouts: Vec<Blackout>,
}

/// A weekly window: from `start` to `end` on each of `days`; an `end` earlier than `start`
/// closes the window on the next day (`22:00` to `04:00`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.start != self.end").message(msg::WINDOW_EMPTY))]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    /// The days the window opens on. Empty: every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub days: Vec<Weekday>,
    /// When it opens, `HH:MM` on a 24-hour clock.
    #[schemars(schema_with = "clock_time_schema")]
    pub start: String,
    /// When it closes, `HH:MM`; earlier than `start`: on the next day.
    #[schemars(schema_with = "clock_time_schema")]
    pub end: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// Days on which no node starts, `from` to `to` inclusive.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.to >= self.from").message(msg::BLACKOUT_ORDER))]
#[serde(rename_all = "camelCase")]
pub struct Blackout {
    /// The first day, `YYYY-MM-DD`.
    #[schemars(schema_with = "date_schema")]
    pub from: String,
    /// The last day, `YYYY-MM-DD`; the same as `from` for one day.
    #[schemars(schema_with = "date_schema")]
    pub to: String,
}

fn utc() -> String {
    "UTC".into()
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule { time_zone: utc(), windows: vec![], blackouts: vec![] }
    }
}

fn time_zone_schema(_: &mut SchemaGenerator) -> Schema {
    format::TIME_ZONE.schema()
}

fn clock_time_schema(_: &mut SchemaGenerator) -> Schema {
    format::CLOCK_TIME.schema()
}

fn date_schema(_: &mut SchemaGenerator) -> Schema {
    format::DATE.schema()
}

/// Whether nodes may start at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Inside a window and outside a blackout.
    Open,
    /// Closed; nodes may start again at `opens` (`None`: never within a year and a week).
    Closed { opens: Option<Timestamp> },
}

/// A schedule checked against the time zone database, ready to answer.
#[derive(Debug, Clone)]
pub struct Compiled {
    zone: TimeZone,
    windows: Vec<(Vec<jiff::civil::Weekday>, Time, Time)>,
    blackouts: Vec<(Date, Date)>,
}

impl Schedule {
    /// Checks what the schema cannot: the time zone exists, the dates are on the calendar.
    pub fn compile(&self) -> Result<Compiled, String> {
        let zone = TimeZone::get(&self.time_zone).map_err(|_| {
            format!(
                "timeZone {:?} is not a time zone the operator knows; use an IANA name like Europe/Berlin or UTC",
                self.time_zone
            )
        })?;
        let clock = |value: &str| {
            value.parse::<Time>().map_err(|_| format!("{value:?} is not a time of day (HH:MM)"))
        };
        let date = |value: &str| {
            value.parse::<Date>().map_err(|_| format!("{value:?} is not a date on the calendar (YYYY-MM-DD)"))
        };
        let windows = self
            .windows
            .iter()
            .map(|w| Ok((w.days.iter().map(|d| d.civil()).collect(), clock(&w.start)?, clock(&w.end)?)))
            .collect::<Result<_, String>>()?;
        let blackouts = self
            .blackouts
            .iter()
            .map(|b| Ok((date(&b.from)?, date(&b.to)?)))
            .collect::<Result<_, String>>()?;
        Ok(Compiled { zone, windows, blackouts })
    }
}

impl Weekday {
    fn civil(self) -> jiff::civil::Weekday {
        use jiff::civil::Weekday as W;
        match self {
            Weekday::Monday => W::Monday,
            Weekday::Tuesday => W::Tuesday,
            Weekday::Wednesday => W::Wednesday,
            Weekday::Thursday => W::Thursday,
            Weekday::Friday => W::Friday,
            Weekday::Saturday => W::Saturday,
            Weekday::Sunday => W::Sunday,
        }
    }
}

/// How far ahead the next opening is looked for: a year and a week covers every weekly window
/// past a blackout of up to a year.
const LOOK_AHEAD_DAYS: i32 = 373;

impl Compiled {
    /// Whether nodes may start at `now`, and if not, from when.
    pub fn at(&self, now: Timestamp) -> Admission {
        if self.open(now) {
            return Admission::Open;
        }
        // Whether nodes may start changes only when a window opens or a blackout ends (at a
        // local midnight): the first such instant from which it is open is the next opening.
        let today = now.to_zoned(self.zone.clone()).date();
        let mut candidates: Vec<Timestamp> = Vec::new();
        for offset in 0..=LOOK_AHEAD_DAYS {
            let Ok(day) = today.checked_add(offset.days()) else { break };
            candidates.push(self.instant(day.to_datetime(Time::midnight())));
            for (days, start, _) in &self.windows {
                if days.is_empty() || days.contains(&day.weekday()) {
                    candidates.push(self.instant(day.to_datetime(*start)));
                }
            }
        }
        candidates.sort();
        let opens = candidates.into_iter().filter(|c| *c > now).find(|c| self.open(*c));
        Admission::Closed { opens }
    }

    fn instant(&self, local: DateTime) -> Timestamp {
        // A local time a DST change skips or repeats: the earlier reading, as cron does.
        self.zone.to_ambiguous_timestamp(local).compatible().unwrap_or(Timestamp::MAX)
    }

    fn open(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.zone.clone());
        let date = local.date();
        if self.blackouts.iter().any(|(from, to)| *from <= date && date <= *to) {
            return false;
        }
        if self.windows.is_empty() {
            return true;
        }
        let time = local.time();
        self.windows.iter().any(|(days, start, end)| {
            let on = |d: Date| days.is_empty() || days.contains(&d.weekday());
            if start < end {
                on(date) && *start <= time && time < *end
            } else {
                // Crosses midnight: the evening part today, or the morning part of yesterday's.
                (on(date) && *start <= time) || (date.yesterday().is_ok_and(on) && time < *end)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(value: serde_json::Value) -> Compiled {
        let schedule: Schedule = serde_json::from_value(value).unwrap_or_else(|e| panic!("schedule: {e}"));
        schedule.compile().unwrap_or_else(|e| panic!("compile: {e}"))
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_window_across_midnight_opens_in_its_zone_and_closes_the_next_morning() {
        // Saturday 22:00 to Sunday 04:00, Berlin time (UTC+1 in December).
        let s = schedule(serde_json::json!({"timeZone": "Europe/Berlin",
            "windows": [{"days": ["Saturday"], "start": "22:00", "end": "04:00"}]}));
        // Saturday 2026-12-05, 20:59 UTC = 21:59 Berlin: closed, opens at 21:00 UTC.
        assert_eq!(
            s.at(at("2026-12-05T20:59:00Z")),
            Admission::Closed { opens: Some(at("2026-12-05T21:00:00Z")) }
        );
        assert_eq!(s.at(at("2026-12-05T21:00:00Z")), Admission::Open);
        assert_eq!(s.at(at("2026-12-06T02:59:00Z")), Admission::Open, "Sunday 03:59 Berlin");
        // Sunday 04:00 Berlin: closed until next Saturday.
        assert_eq!(
            s.at(at("2026-12-06T03:00:00Z")),
            Admission::Closed { opens: Some(at("2026-12-12T21:00:00Z")) }
        );
    }

    #[test]
    fn a_blackout_skips_the_windows_it_covers() {
        let s = schedule(serde_json::json!({"timeZone": "America/New_York",
            "windows": [{"start": "01:00", "end": "05:00"}],
            "blackouts": [{"from": "2026-12-24", "to": "2026-12-26"}]}));
        // 2026-12-24 02:00 New York (07:00 UTC): inside the daily window, but blacked out; the
        // next opening is 2026-12-27 01:00 New York (06:00 UTC).
        assert_eq!(
            s.at(at("2026-12-24T07:00:00Z")),
            Admission::Closed { opens: Some(at("2026-12-27T06:00:00Z")) }
        );
        assert_eq!(s.at(at("2026-12-27T06:30:00Z")), Admission::Open);
    }

    #[test]
    fn without_windows_only_blackouts_close_and_a_day_after_one_opens_at_midnight() {
        let s = schedule(serde_json::json!({"blackouts": [{"from": "2026-12-31", "to": "2026-12-31"}]}));
        assert_eq!(s.at(at("2026-12-30T23:59:00Z")), Admission::Open);
        assert_eq!(
            s.at(at("2026-12-31T12:00:00Z")),
            Admission::Closed { opens: Some(at("2027-01-01T00:00:00Z")) }
        );
    }

    #[test]
    fn a_daylight_saving_change_keeps_the_window_in_local_time() {
        // Berlin moves to summer time on 2027-03-28: a daily 02:00-04:00 window opens at 01:00
        // UTC before and, 02:00 not existing that day, at 01:00 UTC (03:00 CEST) on it.
        let s = schedule(
            serde_json::json!({"timeZone": "Europe/Berlin", "windows": [{"start": "02:00", "end": "04:00"}]}),
        );
        assert_eq!(
            s.at(at("2027-03-27T00:30:00Z")),
            Admission::Closed { opens: Some(at("2027-03-27T01:00:00Z")) }
        );
        assert_eq!(s.at(at("2027-03-28T01:30:00Z")), Admission::Open, "03:30 CEST");
        assert_eq!(s.at(at("2027-03-29T00:30:00Z")), Admission::Open, "02:30 CEST, the day after");
    }

    #[test]
    fn what_the_schema_cannot_check_is_refused_with_what_to_fix() {
        let unknown = Schedule { time_zone: "Mars/Olympus".into(), ..Schedule::default() };
        let error = unknown.compile().err().unwrap_or_default();
        assert!(error.contains("timeZone \"Mars/Olympus\" is not a time zone"), "{error}");
        let february = Schedule {
            time_zone: "UTC".into(),
            blackouts: vec![Blackout { from: "2027-02-30".into(), to: "2027-03-01".into() }],
            ..Schedule::default()
        };
        let error = february.compile().err().unwrap_or_default();
        assert!(error.contains("\"2027-02-30\" is not a date on the calendar"), "{error}");
    }
}
