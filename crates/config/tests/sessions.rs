//! The browser session limits: `server.session_idle_timeout` and
//! `server.session_max_lifetime`, their defaults, environment overrides and problems.

mod common;

use chrono::Duration;
use common::{BASE, errors, errors_with, expect, list, load};
use countersign_config::{Env, load_str};

#[test]
fn defaults_are_thirty_minutes_and_twelve_hours() {
    let s = load(BASE);
    assert_eq!(s.server.session_idle_timeout, Duration::minutes(30));
    assert_eq!(s.server.session_max_lifetime, Duration::hours(12));
}

#[test]
fn both_can_be_set() {
    let text = BASE.replace(
        "[[issuers]]",
        "session_idle_timeout = \"15m\"\nsession_max_lifetime = \"8h\"\n[[issuers]]",
    );
    let s = load(&text);
    assert_eq!(s.server.session_idle_timeout, Duration::minutes(15));
    assert_eq!(s.server.session_max_lifetime, Duration::hours(8));
}

#[test]
fn environment_overrides_apply() {
    let env = Env::from_pairs([
        (
            "COUNTERSIGN_SERVER__SESSION_IDLE_TIMEOUT".to_string(),
            "5m".to_string(),
        ),
        (
            "COUNTERSIGN_SERVER__SESSION_MAX_LIFETIME".to_string(),
            "4h".to_string(),
        ),
    ]);
    let s = load_str(BASE, "countersign.toml", &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.server.session_idle_timeout, Duration::minutes(5));
    assert_eq!(s.server.session_max_lifetime, Duration::hours(4));
}

#[test]
fn bad_values_name_file_line_and_key() {
    // BASE's [server] section ends at line 3; the keys go on lines 3 and 4.
    let text = BASE.replace(
        "[[issuers]]",
        "session_idle_timeout = \"0s\"\nsession_max_lifetime = \"forever\"\n[[issuers]]",
    );
    let ps = errors(&text);
    expect(
        &ps,
        "server.session_idle_timeout",
        4,
        "must be longer than zero",
    );
    expect(&ps, "server.session_max_lifetime", 5, "is not a duration");
    assert_eq!(ps.len(), 2, "{}", list(&ps));
}

#[test]
fn an_idle_timeout_longer_than_the_lifetime_is_refused() {
    let text = BASE.replace(
        "[[issuers]]",
        "session_idle_timeout = \"2h\"\nsession_max_lifetime = \"1h\"\n[[issuers]]",
    );
    let ps = errors(&text);
    expect(
        &ps,
        "server.session_idle_timeout",
        4,
        "session_idle_timeout (2h) is longer than session_max_lifetime (1h)",
    );
    assert_eq!(ps.len(), 1, "{}", list(&ps));

    // Only the lifetime written, shorter than the default idle timeout: reported there.
    let text = BASE.replace("[[issuers]]", "session_max_lifetime = \"10m\"\n[[issuers]]");
    let ps = errors(&text);
    expect(
        &ps,
        "server.session_max_lifetime",
        4,
        "session_idle_timeout (30m) is longer than session_max_lifetime (10m)",
    );

    // From the environment: the problem names the variable.
    let env = Env::from_pairs([(
        "COUNTERSIGN_SERVER__SESSION_IDLE_TIMEOUT".to_string(),
        "13h".to_string(),
    )]);
    let ps = errors_with(BASE, &env);
    assert_eq!(ps.len(), 1, "{}", list(&ps));
    assert_eq!(ps[0].key, "COUNTERSIGN_SERVER__SESSION_IDLE_TIMEOUT");
    assert!(
        ps[0]
            .message
            .contains("longer than session_max_lifetime (12h)"),
        "{}",
        ps[0].message
    );
}
