//! The handlers' configuration: environment variables set by the stack on each function (and
//! by `run-local` outside Lambda). A missing or invalid variable is named in the error.

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name}: {message}")]
    Invalid { name: &'static str, message: String },
}

/// The variable's value; empty counts as unset.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(ConfigError::Missing(name))
}

/// The variable's value, or `default` when unset.
pub fn or_default(name: &'static str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// A base URL without its trailing `/`, so paths can be appended.
pub fn base_url(name: &'static str, default: &str) -> Result<String, ConfigError> {
    let url = or_default(name, default);
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ConfigError::Invalid {
            name,
            message: format!("`{url}` is not an http(s) URL"),
        });
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// `LOOKBACK_DAYS`: how many trailing days a run covers (default 7, at most 90).
pub fn lookback_days() -> Result<u32, ConfigError> {
    let lookback = or_default("LOOKBACK_DAYS", "7");
    lookback
        .parse::<u32>()
        .ok()
        .filter(|d| (1..=90).contains(d))
        .ok_or(ConfigError::Invalid {
            name: "LOOKBACK_DAYS",
            message: format!("`{lookback}`: 1 to 90 days"),
        })
}

/// The variable parsed as `T` and accepted by `valid`, or `default` when unset; `expected`
/// says what a valid value is.
pub fn parsed<T: std::str::FromStr>(
    name: &'static str,
    default: &str,
    valid: impl Fn(&T) -> bool,
    expected: &str,
) -> Result<T, ConfigError> {
    let text = or_default(name, default);
    text.parse::<T>()
        .ok()
        .filter(|v| valid(v))
        .ok_or(ConfigError::Invalid {
            name,
            message: format!("`{text}`: {expected}"),
        })
}
