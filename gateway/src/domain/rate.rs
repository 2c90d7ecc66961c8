//! A rate as people write it in config: `50/s`, `600/min`, `6/day`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// So many events per period: `N/s`, `N/min`, `N/h` or `N/day`, N at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many events.
    pub count: u32,
    /// In how long.
    pub period: Duration,
}

impl Rate {
    /// The even spacing between events at this rate.
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }

    /// Events per second, for reports.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.period.as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wrong = || format!("{s:?} is not a rate like 50/s, 600/min, 1000/h or 6/day");
        let (count, unit) = s.trim().split_once('/').ok_or_else(wrong)?;
        let count: u32 = count.trim().parse().map_err(|_| wrong())?;
        if count == 0 {
            return Err(format!("{s:?}: the count must be at least 1"));
        }
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "day" | "d" => Duration::from_secs(86_400),
            _ => return Err(wrong()),
        };
        Ok(Self { count, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_people_write() {
        let r: Rate = "50/s".parse().unwrap();
        assert_eq!(r.interval(), Duration::from_millis(20));
        assert_eq!("600/min".parse::<Rate>().unwrap().per_second(), 10.0);
        assert_eq!(
            "6/day".parse::<Rate>().unwrap().interval(),
            Duration::from_secs(4 * 3600)
        );
        assert_eq!(" 1000 / h ".parse::<Rate>().unwrap().to_string(), "1000/h");
    }

    #[test]
    fn refuses_what_is_not_a_rate() {
        for bad in ["", "50", "0/s", "-1/s", "50/week", "fast/s", "50/"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} was accepted");
        }
    }
}
