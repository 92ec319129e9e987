//! The client commands — talking to a server (`login`, `gates`, `request`, `approve`, `run`…)
//! and the offline `explain` — and the argument parsers they share.

pub mod decide;
pub mod explain;
pub mod gates;
pub mod login;
pub mod requests;
pub mod run;
pub mod wait;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::failure::Failure;

/// `-p KEY=VALUE`: one parameter of a request.
pub fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "expected KEY=VALUE (e.g. -p service=api), got '{text}'"
        )),
    }
}

/// A request id: `req_` and 26 ULID characters.
pub fn parse_request_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    let ok = text
        .strip_prefix("req_")
        .is_some_and(|ulid| ulid.len() == 26 && ulid.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "'{text}' is not a request id (they look like req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3)"
        ))
    }
}

/// A duration such as `90s`, `30m`, `2h` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    countersign_core::time::parse_duration(text)?
        .to_std()
        .map_err(|_| format!("'{text}' is not a usable duration"))
}

/// The parameters as the API's `params` object; a key given twice is an error.
pub fn params_object(params: &[(String, String)]) -> Result<Map<String, Value>, Failure> {
    let mut map = Map::new();
    for (key, value) in params {
        if map
            .insert(key.clone(), Value::String(value.clone()))
            .is_some()
        {
            return Err(Failure::error(format!(
                "parameter '{key}' is given twice; pass each -p KEY=VALUE once"
            )));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse() {
        assert_eq!(
            parse_param("service=api"),
            Ok(("service".into(), "api".into()))
        );
        assert_eq!(parse_param("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_param("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_param("service").is_err());
        assert!(parse_param("=api").is_err());
        let twice = params_object(&[("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert!(twice.is_err());
    }

    #[test]
    fn request_ids_parse() {
        assert!(parse_request_id("req_01J9Z8Q4W5X6Y7Z8A9B0C1D2E3").is_ok());
        assert!(parse_request_id("01J9Z8Q4W5X6Y7Z8A9B0C1D2E3").is_err());
        assert!(parse_request_id("req_../../x").is_err());
    }
}
