//! EventBridge schedule expressions, checked the way AWS checks them (the emulator accepts
//! what AWS rejects): `rate(<n> <unit>)` with the singular unit for 1 and the plural for more,
//! or a six-field `cron(...)` with `?` in exactly one of day-of-month and day-of-week.

/// Checks `expression`; the error says what is wrong in words.
pub fn validate(expression: &str) -> Result<(), String> {
    let e = expression.trim();
    if let Some(inner) = e.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
        return validate_rate(inner);
    }
    if let Some(inner) = e.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
        return validate_cron(inner);
    }
    Err(format!(
        "`{expression}` is neither `rate(<n> <unit>)` nor `cron(<6 fields>)`"
    ))
}

fn validate_rate(inner: &str) -> Result<(), String> {
    let parts: Vec<&str> = inner.split_whitespace().collect();
    let [n, unit] = parts.as_slice() else {
        return Err(format!(
            "`rate({inner})`: expected `rate(<n> <unit>)`, e.g. `rate(6 hours)`"
        ));
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`rate({inner})`: `{n}` is not a positive whole number"))?;
    if n == 0 {
        return Err(format!("`rate({inner})`: the value must be positive"));
    }
    let (singular, plural) = match *unit {
        "minute" | "minutes" => ("minute", "minutes"),
        "hour" | "hours" => ("hour", "hours"),
        "day" | "days" => ("day", "days"),
        other => {
            return Err(format!(
                "`rate({inner})`: unknown unit `{other}` (minute(s), hour(s) or day(s))"
            ));
        }
    };
    let expected = if n == 1 { singular } else { plural };
    if *unit != expected {
        return Err(format!(
            "`rate({inner})`: AWS requires `rate({n} {expected})` (singular for 1, plural otherwise)"
        ));
    }
    Ok(())
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn validate_cron(inner: &str) -> Result<(), String> {
    let fields: Vec<&str> = inner.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "`cron({inner})` has {} fields; EventBridge cron has 6: minutes hours day-of-month month day-of-week year",
            fields.len()
        ));
    }
    let (dom, dow) = (fields[2], fields[4]);
    match (dom == "?", dow == "?") {
        (true, true) => {
            return Err(format!(
                "`cron({inner})`: only one of day-of-month and day-of-week may be `?`"
            ));
        }
        (false, false) => {
            return Err(format!(
                "`cron({inner})`: one of day-of-month and day-of-week must be `?`"
            ));
        }
        _ => {}
    }
    let specs: [(&str, u32, u32, &[&str], &str); 6] = [
        ("minutes", 0, 59, &[], ""),
        ("hours", 0, 23, &[], ""),
        ("day-of-month", 1, 31, &[], "?LW"),
        ("month", 1, 12, &MONTHS, ""),
        ("day-of-week", 1, 7, &DAYS, "?L#"),
        ("year", 1970, 2199, &[], ""),
    ];
    for (field, (name, min, max, names, extra)) in fields.iter().zip(specs) {
        validate_cron_field(inner, field, name, min, max, names, extra)?;
    }
    Ok(())
}

fn validate_cron_field(
    inner: &str,
    field: &str,
    name: &str,
    min: u32,
    max: u32,
    names: &[&str],
    extra: &str,
) -> Result<(), String> {
    if field == "*" || (field == "?" && extra.contains('?')) {
        return Ok(());
    }
    let bad = |why: &str| Err(format!("`cron({inner})`: {name} field `{field}` {why}"));
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(s) if s > 0 => {}
                _ => return bad("has an invalid increment"),
            }
        }
        if range == "*" {
            continue;
        }
        let value = |v: &str| -> Option<u32> {
            let v = v.trim_end_matches(['L', 'W']);
            if v.is_empty() {
                return Some(min);
            }
            if let Some((d, nth)) = v.split_once('#') {
                if !extra.contains('#') || !matches!(nth.parse::<u32>(), Ok(1..=5)) {
                    return None;
                }
                return value_of(d, min, max, names);
            }
            value_of(v, min, max, names)
        };
        if (range.contains('L') && !extra.contains('L'))
            || (range.contains('W') && !extra.contains('W'))
        {
            return bad("uses L or W where they are not allowed");
        }
        match range.split_once('-') {
            Some((a, b)) => match (value(a), value(b)) {
                (Some(_), Some(_)) => {}
                _ => return bad(&format!("is out of range ({min}-{max})")),
            },
            None => {
                if value(range).is_none() {
                    return bad(&format!("is out of range ({min}-{max})"));
                }
            }
        }
    }
    Ok(())
}

fn value_of(v: &str, min: u32, max: u32, names: &[&str]) -> Option<u32> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
        return Some(i as u32 + min);
    }
    v.parse::<u32>().ok().filter(|n| (min..=max).contains(n))
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_aws_forms() {
        for ok in [
            "rate(6 hours)",
            "rate(1 hour)",
            "rate(1 day)",
            "rate(15 minutes)",
            "cron(0 7 * * ? *)",
            "cron(30 */6 * * ? *)",
            "cron(0 8 ? * MON-FRI *)",
            "cron(0 12 L * ? 2026)",
            "cron(0 9 ? * 2#1 *)",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_what_aws_rejects() {
        for bad in [
            "rate(1 hours)",
            "rate(6 hour)",
            "rate(0 hours)",
            "rate(6 weeks)",
            "cron(0 7 * * *)",
            "cron(0 7 * * * *)",
            "cron(0 7 ? * ? *)",
            "cron(61 7 * * ? *)",
            "cron(0 24 * * ? *)",
            "every 6 hours",
        ] {
            assert!(validate(bad).is_err(), "{bad} should be rejected");
        }
    }
}
