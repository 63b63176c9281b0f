//! When a task runs: by hand only, every N seconds, or by a cron expression (UTC, croner's
//! syntax: five fields, or six with seconds first; Quartz's `?` is accepted). In the API it is
//! Nexus's `frequency` object: `{"schedule": "manual" | "interval" | "cron", "intervalSeconds",
//! "cronExpression"}`.

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use wharf_format::ConfigError;

/// The longest interval (ten years): more would overflow the milliseconds of the next run.
pub const MAX_INTERVAL_SECS: u64 = 315_360_000;

#[derive(Clone, Debug)]
pub enum Frequency {
    Manual,
    Interval(u64),
    Cron(String, Box<croner::Cron>),
}

impl PartialEq for Frequency {
    fn eq(&self, other: &Frequency) -> bool {
        self.to_json() == other.to_json()
    }
}

impl Frequency {
    /// A cron expression, or manual when empty.
    pub fn cron(expr: &str) -> Result<Frequency, String> {
        let expr = expr.trim();
        if expr.is_empty() {
            return Ok(Frequency::Manual);
        }
        let parsed = croner::Cron::from_str(expr).map_err(|e| format!("{expr:?} is not a cron expression: {e}"))?;
        let f = Frequency::Cron(expr.to_string(), Box::new(parsed));
        // One that parses and never comes (the 30th of February, a year gone by) would leave
        // its task enabled and never run.
        if f.next_after(wharf_format::now_millis()).is_none() {
            return Err(format!("{expr:?} names no time from now on"));
        }
        Ok(f)
    }

    pub fn parse(v: &Value) -> Result<Frequency, ConfigError> {
        let field = "frequency";
        let obj = v.as_object().ok_or_else(|| ConfigError::not_object(field))?;
        for k in obj.keys() {
            if !["schedule", "intervalSeconds", "cronExpression"].contains(&k.as_str()) {
                return Err(ConfigError::unknown_field(format!("frequency.{k}")));
            }
        }
        let schedule = obj.get("schedule").and_then(Value::as_str);
        // The other schedule's field would be kept by nothing: said, not dropped.
        for (k, used_by) in [("intervalSeconds", "interval"), ("cronExpression", "cron")] {
            if obj.get(k).is_some_and(|v| !v.is_null()) && schedule.is_some_and(|s| s != used_by) {
                return Err(ConfigError::new(format!("frequency.{k}"), format!("is for schedule \"{used_by}\", not {:?}", schedule.unwrap_or_default())));
            }
        }
        match schedule {
            Some("manual") => Ok(Frequency::Manual),
            Some("interval") => match obj.get("intervalSeconds").and_then(Value::as_u64) {
                Some(s) if (1..=MAX_INTERVAL_SECS).contains(&s) => Ok(Frequency::Interval(s)),
                _ => Err(ConfigError::new("frequency.intervalSeconds", format!("must be a whole number of seconds, 1 to {MAX_INTERVAL_SECS}"))),
            },
            Some("cron") => {
                let expr = obj.get("cronExpression").and_then(Value::as_str).unwrap_or_default();
                if expr.trim().is_empty() {
                    return Err(ConfigError::new("frequency.cronExpression", "is required for schedule \"cron\""));
                }
                Frequency::cron(expr).map_err(|e| ConfigError::new("frequency.cronExpression", e))
            }
            _ => Err(ConfigError::new("frequency.schedule", "must be \"manual\", \"interval\" or \"cron\"")),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Frequency::Manual => json!({ "schedule": "manual" }),
            Frequency::Interval(s) => json!({ "schedule": "interval", "intervalSeconds": s }),
            Frequency::Cron(expr, _) => json!({ "schedule": "cron", "cronExpression": expr }),
        }
    }

    /// The first run after `after` (milliseconds since the epoch), if the schedule has one.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        match self {
            Frequency::Manual => None,
            Frequency::Interval(s) => Some(after.saturating_add(i64::try_from(*s).unwrap_or(i64::MAX).saturating_mul(1000))),
            Frequency::Cron(_, cron) => {
                let t = Utc.timestamp_millis_opt(after).single()?;
                cron.find_next_occurrence(&t, false).ok().map(|n| n.timestamp_millis())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_say_when_next() {
        let daily = Frequency::parse(&json!({"schedule": "cron", "cronExpression": "0 0 2 * * ?"})).unwrap();
        // 2026-12-02T12:00:00Z → the next 02:00 UTC is the 3rd.
        let noon = 1_796_212_800_000;
        assert_eq!(wharf_format::rfc3339_millis(daily.next_after(noon).unwrap()), "2026-12-03T02:00:00.000Z");
        let every = Frequency::parse(&json!({"schedule": "interval", "intervalSeconds": 90})).unwrap();
        assert_eq!(every.next_after(noon), Some(noon + 90_000));
        assert_eq!(Frequency::parse(&json!({"schedule": "manual"})).unwrap().next_after(noon), None);
        assert_eq!(Frequency::parse(&json!({"schedule": "cron", "cronExpression": "61 * * * *"})).unwrap_err().field, "frequency.cronExpression");
        assert_eq!(Frequency::parse(&json!({"schedule": "interval"})).unwrap_err().field, "frequency.intervalSeconds");
        assert_eq!(Frequency::parse(&json!({"schedule": "interval", "intervalSeconds": u64::MAX})).unwrap_err().field, "frequency.intervalSeconds");
        assert_eq!(Frequency::parse(&json!({"schedule": "weekly"})).unwrap_err().field, "frequency.schedule");
        assert_eq!(Frequency::parse(&json!({"schedule": "manual", "startDate": 1})).unwrap_err().field, "frequency.startDate");
    }
}
