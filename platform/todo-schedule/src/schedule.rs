//! When the next instance of a recurring task is due, and when its reminder fires.
//!
//! Rules:
//! - The next due date is computed from the previous *due date*, never from the
//!   completion time.
//! - It is reckoned in the task's IANA time zone and keeps the wall-clock time
//!   across daylight-saving changes: a task due daily at 09:00 in Berlin stays at
//!   09:00 local time, whatever the UTC offset.
//! - Monthly keeps the series' anchor day: 31 Jan → 28 Feb → 31 Mar (29 Feb in a
//!   leap year). The [`Anchor`] (day of month and local time of day) comes from
//!   the series' first due date and travels with the series.
//! - A local time that does not exist (the spring-forward gap) is moved forward
//!   by the length of the gap (02:30 in Berlin on the last Sunday of March
//!   becomes 03:30 CEST; the next day is at 02:30 again, since the anchor
//!   keeps the intended time); an ambiguous one (the fall-back hour) takes its
//!   first occurrence (the earlier instant, still on summer time).
//! - The reminder keeps its distance from the due date.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
pub use todo_contract::Frequency;

/// The input that cannot be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("`{0}` is not a known IANA time zone")]
    UnknownTimeZone(String),
    #[error("anchor day {0} is not a day of a month (1-31)")]
    BadAnchorDay(u32),
    #[error("the next due date is out of the representable range")]
    OutOfRange,
}

/// Parses an IANA time zone name.
pub fn time_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimeZone(name.to_owned()))
}

/// What a series keeps from its first due date: the local day of month
/// (monthly series) and the local time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub day: u32,
    pub time: NaiveTime,
}

impl Anchor {
    /// The anchor of a series whose first instance is due at `first_due` in `tz`.
    pub fn of(first_due: DateTime<Utc>, tz: Tz) -> Anchor {
        let local = first_due.with_timezone(&tz);
        Anchor {
            day: local.day(),
            time: local.time(),
        }
    }
}

/// The due date of the instance after the one due at `previous_due`, for a
/// series anchored at `anchor` (see the module rules).
pub fn next_due(
    previous_due: DateTime<Utc>,
    frequency: Frequency,
    tz: Tz,
    anchor: Anchor,
) -> Result<DateTime<Utc>, ScheduleError> {
    if !(1..=31).contains(&anchor.day) {
        return Err(ScheduleError::BadAnchorDay(anchor.day));
    }
    let date = previous_due.with_timezone(&tz).date_naive();
    let next_date = match frequency {
        Frequency::Daily => date.checked_add_signed(Duration::days(1)),
        Frequency::Weekly => date.checked_add_signed(Duration::days(7)),
        Frequency::Monthly => next_month_on(date, anchor.day),
    }
    .ok_or(ScheduleError::OutOfRange)?;
    let next = resolve(tz, next_date.and_time(anchor.time)).ok_or(ScheduleError::OutOfRange)?;
    // Guards the rare zone whose transition would otherwise pull the instant
    // back behind the previous one.
    Ok(if next > previous_due {
        next
    } else {
        previous_due + Duration::hours(1)
    })
}

/// When the reminder of the next instance fires: as long before its due date as
/// the previous reminder was before the previous due date.
pub fn next_reminder(
    previous_due: DateTime<Utc>,
    previous_reminder: DateTime<Utc>,
    next_due: DateTime<Utc>,
) -> DateTime<Utc> {
    next_due - (previous_due - previous_reminder)
}

/// The date in the month after `date`'s, on `anchor_day` or the month's last day.
fn next_month_on(date: NaiveDate, anchor_day: u32) -> Option<NaiveDate> {
    let first_of_next = date.with_day(1)?.checked_add_months(Months::new(1))?;
    let last_day = first_of_next
        .checked_add_months(Months::new(1))?
        .pred_opt()?
        .day();
    first_of_next.with_day(anchor_day.min(last_day))
}

/// The instant a local wall-clock time names in `tz`, by the module's rules for
/// gaps (forward by the gap) and overlaps (first occurrence).
fn resolve(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, second) => Some(first.min(second).with_timezone(&Utc)),
        LocalResult::None => {
            // In a gap: read the time with the offset in force just before it,
            // which lands as far after the gap's end as the time was after its
            // start. Gaps last from minutes to a whole day (Pacific/Apia skipped
            // 30 December 2011), so look back hour by hour for a valid time.
            let offset = (1..=48)
                .find_map(|h| {
                    tz.from_local_datetime(&(local - Duration::hours(h)))
                        .earliest()
                })?
                .offset()
                .fix();
            offset
                .from_local_datetime(&local)
                .single()
                .map(|t| t.with_timezone(&Utc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Europe::Berlin, UTC};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn local(tz: Tz, t: DateTime<Utc>) -> String {
        t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
    }

    fn series(first: &str, f: Frequency, tz: Tz, n: usize) -> Vec<String> {
        let first = utc(first);
        let anchor = Anchor::of(first, tz);
        let mut out = vec![local(tz, first)];
        let mut due = first;
        for _ in 0..n {
            due = next_due(due, f, tz, anchor).unwrap();
            out.push(local(tz, due));
        }
        out
    }

    #[test]
    fn daily_is_the_next_day_at_the_same_time() {
        assert_eq!(
            series("2026-05-10T09:00:00Z", Frequency::Daily, UTC, 2),
            [
                "2026-05-10 09:00 UTC",
                "2026-05-11 09:00 UTC",
                "2026-05-12 09:00 UTC"
            ]
        );
    }

    #[test]
    fn weekly_counts_from_the_due_date_not_the_completion() {
        // Completed days late or early, the next instance is 7 days after the due date.
        let due = utc("2026-05-04T17:00:00Z");
        let anchor = Anchor::of(due, UTC);
        assert_eq!(
            next_due(due, Frequency::Weekly, UTC, anchor).unwrap(),
            utc("2026-05-11T17:00:00Z")
        );
    }

    #[test]
    fn monthly_keeps_the_anchor_day_through_short_months() {
        assert_eq!(
            series("2026-01-31T10:00:00Z", Frequency::Monthly, UTC, 4),
            [
                "2026-01-31 10:00 UTC",
                "2026-02-28 10:00 UTC",
                "2026-03-31 10:00 UTC",
                "2026-04-30 10:00 UTC",
                "2026-05-31 10:00 UTC"
            ]
        );
    }

    #[test]
    fn monthly_on_the_29th_lands_on_29_february_in_a_leap_year() {
        assert_eq!(
            series("2028-01-29T08:00:00Z", Frequency::Monthly, UTC, 2),
            [
                "2028-01-29 08:00 UTC",
                "2028-02-29 08:00 UTC",
                "2028-03-29 08:00 UTC"
            ]
        );
        assert_eq!(
            series("2027-01-30T08:00:00Z", Frequency::Monthly, UTC, 2),
            [
                "2027-01-30 08:00 UTC",
                "2027-02-28 08:00 UTC",
                "2027-03-30 08:00 UTC"
            ]
        );
    }

    #[test]
    fn monthly_wraps_the_year() {
        assert_eq!(
            series("2026-12-15T12:00:00Z", Frequency::Monthly, UTC, 1),
            ["2026-12-15 12:00 UTC", "2027-01-15 12:00 UTC"]
        );
    }

    #[test]
    fn daily_keeps_wall_clock_time_across_spring_forward_in_berlin() {
        // 29 March 2026: clocks go from 02:00 CET to 03:00 CEST.
        assert_eq!(
            series("2026-03-28T08:00:00Z", Frequency::Daily, Berlin, 2),
            [
                "2026-03-28 09:00 CET",
                "2026-03-29 09:00 CEST",
                "2026-03-30 09:00 CEST"
            ]
        );
    }

    #[test]
    fn daily_keeps_wall_clock_time_across_fall_back_in_new_york() {
        // 1 November 2026: clocks go from 02:00 EDT back to 01:00 EST.
        assert_eq!(
            series("2026-10-31T12:30:00Z", Frequency::Daily, New_York, 2),
            [
                "2026-10-31 08:30 EDT",
                "2026-11-01 08:30 EST",
                "2026-11-02 08:30 EST"
            ]
        );
    }

    #[test]
    fn a_time_in_the_spring_forward_gap_moves_forward_by_the_gap() {
        // 02:30 local does not exist on 29 March 2026 in Berlin.
        let due = Berlin
            .with_ymd_and_hms(2026, 3, 28, 2, 30, 0)
            .unwrap()
            .with_timezone(&Utc);
        let anchor = Anchor::of(due, Berlin);
        let next = next_due(due, Frequency::Daily, Berlin, anchor).unwrap();
        assert_eq!(local(Berlin, next), "2026-03-29 03:30 CEST");
        // And the day after, the series is back at its 02:30.
        assert_eq!(
            local(
                Berlin,
                next_due(next, Frequency::Daily, Berlin, anchor).unwrap()
            ),
            "2026-03-30 02:30 CEST"
        );
    }

    #[test]
    fn a_day_that_does_not_exist_moves_forward_by_the_whole_gap() {
        // Samoa skipped 30 December 2011 (from UTC-10 to UTC+14).
        let apia = chrono_tz::Pacific::Apia;
        let due = apia
            .with_ymd_and_hms(2011, 12, 29, 10, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let next = next_due(due, Frequency::Daily, apia, Anchor::of(due, apia)).unwrap();
        assert_eq!(local(apia, next), "2011-12-31 10:00 +14");
    }

    #[test]
    fn an_ambiguous_time_takes_its_first_occurrence() {
        // 01:30 happens twice on 1 November 2026 in New York; take the EDT one.
        let due = New_York
            .with_ymd_and_hms(2026, 10, 31, 1, 30, 0)
            .unwrap()
            .with_timezone(&Utc);
        let next = next_due(due, Frequency::Daily, New_York, Anchor::of(due, New_York)).unwrap();
        assert_eq!(local(New_York, next), "2026-11-01 01:30 EDT");
    }

    #[test]
    fn monthly_across_dst_keeps_local_time_in_new_york() {
        assert_eq!(
            series("2026-02-28T14:00:00Z", Frequency::Monthly, New_York, 1),
            ["2026-02-28 09:00 EST", "2026-03-28 09:00 EDT"]
        );
    }

    #[test]
    fn the_reminder_keeps_its_distance_from_the_due_date() {
        let due = utc("2026-05-10T09:00:00Z");
        let reminder = utc("2026-05-10T08:45:00Z");
        let next = utc("2026-05-11T09:00:00Z");
        assert_eq!(
            next_reminder(due, reminder, next),
            utc("2026-05-11T08:45:00Z")
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert_eq!(
            time_zone("Mars/Olympus"),
            Err(ScheduleError::UnknownTimeZone("Mars/Olympus".into()))
        );
        let bad = Anchor {
            day: 0,
            time: NaiveTime::MIN,
        };
        assert_eq!(
            next_due(Utc::now(), Frequency::Monthly, UTC, bad),
            Err(ScheduleError::BadAnchorDay(0))
        );
        assert_eq!(Frequency::parse("hourly"), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const ZONES: [Tz; 6] = [
            chrono_tz::UTC,
            chrono_tz::Europe::Berlin,
            chrono_tz::America::New_York,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Asia::Kolkata,
            chrono_tz::Pacific::Apia,
        ];

        fn frequency() -> impl Strategy<Value = Frequency> {
            prop_oneof![
                Just(Frequency::Daily),
                Just(Frequency::Weekly),
                Just(Frequency::Monthly)
            ]
        }

        /// The local due date-time after `previous` (a local date), worked out
        /// with calendar arithmetic of its own: the day after, seven days
        /// after, or the anchor day (or the last day) of the next month.
        fn expected_local(previous: NaiveDate, f: Frequency, anchor: Anchor) -> NaiveDateTime {
            let date = match f {
                Frequency::Daily => previous.succ_opt().unwrap(),
                Frequency::Weekly => (0..7).fold(previous, |d, _| d.succ_opt().unwrap()),
                Frequency::Monthly => {
                    let (y, m) = if previous.month() == 12 {
                        (previous.year() + 1, 1)
                    } else {
                        (previous.year(), previous.month() + 1)
                    };
                    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
                    let days = [
                        31,
                        if leap { 29 } else { 28 },
                        31,
                        30,
                        31,
                        30,
                        31,
                        31,
                        30,
                        31,
                        30,
                        31,
                    ];
                    NaiveDate::from_ymd_opt(y, m, anchor.day.min(days[m as usize - 1])).unwrap()
                }
            };
            date.and_time(anchor.time)
        }

        proptest! {
            #[test]
            fn next_is_the_expected_local_date_and_time_and_after_previous(
                secs in 946_684_800i64..4_102_444_800i64,
                zone in 0usize..ZONES.len(),
                f in frequency(),
                anchor in 1u32..=31,
            ) {
                let tz = ZONES[zone];
                let due = DateTime::from_timestamp(secs, 0).unwrap();
                let anchor = Anchor { day: anchor, time: due.with_timezone(&tz).time() };
                let next = next_due(due, f, tz, anchor).unwrap();
                let expected = expected_local(due.with_timezone(&tz).date_naive(), f, anchor);
                let got = next.with_timezone(&tz).naive_local();
                match tz.from_local_datetime(&expected) {
                    // The wall-clock time exists: exactly it, its first
                    // occurrence when it happens twice.
                    LocalResult::Single(t) => prop_assert_eq!(next, t.with_timezone(&Utc), "expected {} in {:?}", expected, tz),
                    LocalResult::Ambiguous(a, b) => prop_assert_eq!(next, a.min(b).with_timezone(&Utc), "expected the first {} in {:?}", expected, tz),
                    // In a gap: forward by the gap's length (the offset after
                    // it minus the offset two days before).
                    LocalResult::None => {
                        let after = tz.offset_from_utc_datetime(&next.naive_utc()).fix();
                        let before = tz.offset_from_utc_datetime(&(next - Duration::days(2)).naive_utc()).fix();
                        let gap = Duration::seconds(i64::from(after.local_minus_utc() - before.local_minus_utc()));
                        prop_assert_eq!(got, expected + gap, "{} is in a gap of {} in {:?}", expected, gap, tz);
                    }
                }
                prop_assert!(next > due, "{next} after {due}");
            }

            #[test]
            fn the_anchor_day_is_restored_whenever_the_month_has_it(
                year in 2000i32..2090,
                month in 1u32..=12,
                anchor in 28u32..=31,
                hour in 0u32..24,
                zone in 0usize..ZONES.len(),
                steps in 1usize..30,
            ) {
                let tz = ZONES[zone];
                let Some(date) = NaiveDate::from_ymd_opt(year, month, 1).and_then(|d| next_month_on(d.pred_opt()?, anchor)) else {
                    return Ok(());
                };
                let Some(first) = resolve(tz, date.and_hms_opt(hour, 0, 0).unwrap()) else { return Ok(()) };
                let anchor = Anchor { day: anchor, time: NaiveTime::from_hms_opt(hour, 0, 0).unwrap() };
                let mut due = first;
                for _ in 0..steps {
                    due = next_due(due, Frequency::Monthly, tz, anchor).unwrap();
                    let d = due.with_timezone(&tz).date_naive();
                    let month_len = next_month_on(d.with_day(1).unwrap().pred_opt().unwrap(), 31).unwrap().day();
                    let intended = d.with_day(anchor.day.min(month_len)).unwrap();
                    // A date that does not exist in the zone (a whole-day gap)
                    // moves forward by the documented rule; every other month
                    // lands on the anchor day, or the month's last day.
                    if tz.from_local_datetime(&intended.and_time(anchor.time)).earliest().is_some() {
                        prop_assert_eq!(d, intended, "in {:?}", tz);
                    }
                }
            }
        }
    }
}
