//! `strftime_now(format)`, the function transformers gives chat templates (Llama 3.2's writes
//! "Today Date: 06 Dec 2026" with it): today's date (UTC) in Python's strftime format, for the
//! directives dates use.

use minijinja::{Error, ErrorKind};
use std::time::{SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];

/// The template function.
pub(super) fn strftime_now(format: String) -> Result<String, Error> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_time(&format, secs)
}

/// `format` at `secs` after the Unix epoch (UTC).
fn format_time(format: &str, secs: u64) -> Result<String, Error> {
    let days = (secs / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let d = chars.next().unwrap_or('%');
        let month_name = MONTHS[(month - 1) as usize];
        let weekday = DAYS[days.rem_euclid(7) as usize];
        match d {
            'd' => out.push_str(&format!("{day:02}")),
            'm' => out.push_str(&format!("{month:02}")),
            'Y' => out.push_str(&year.to_string()),
            'y' => out.push_str(&format!("{:02}", year % 100)),
            'b' => out.push_str(&month_name[..3]),
            'B' => out.push_str(month_name),
            'a' => out.push_str(&weekday[..3]),
            'A' => out.push_str(weekday),
            'H' => out.push_str(&format!("{h:02}")),
            'M' => out.push_str(&format!("{m:02}")),
            'S' => out.push_str(&format!("{s:02}")),
            '%' => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: the directive %{other} is not supported"),
                ))
            }
        }
    }
    Ok(out)
}

/// Year, month and day of the day `z` days after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_python_writes_them() {
        // 2024-07-26 00:00:00 UTC, a Friday.
        let t = 1_721_952_000;
        assert_eq!(format_time("%d %b %Y", t).unwrap(), "26 Jul 2024");
        assert_eq!(
            format_time("%A %B %d, %y %H:%M:%S %%", t + 3_723).unwrap(),
            "Friday July 26, 24 01:02:03 %"
        );
        assert_eq!(format_time("%a %m", 0).unwrap(), "Thu 01");
        // A leap day and the turn of a century.
        assert_eq!(format_time("%Y-%m-%d", 951_782_400).unwrap(), "2000-02-29");
        assert_eq!(
            format_time("%Y-%m-%d", 4_107_542_400).unwrap(),
            "2100-03-01"
        );
        assert!(format_time("%Q", 0).unwrap_err().to_string().contains("%Q"));
    }
}
