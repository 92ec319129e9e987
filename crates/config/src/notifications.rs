//! The `[notifications]` section: the channels people hear about requests in (Slack, Teams,
//! e-mail, a signed webhook, the sandbox's preview), referenced by name from gates and rules.

use std::collections::BTreeSet;

use countersign_core::channel::{
    ChannelKind, ChannelSpec, Channels, EmailSpec, SLACK_API_URL, SlackSpec, SmtpSecurity,
    TeamsSpec, WebhookChannelSpec,
};

use crate::check::{Ctx, Fields, check_url, element_label, is_name, resolve_path};
use crate::tree::Node;

const KEYS: &[&str] = &["channels", "requester_channel"];
const CHANNEL_KEYS: &[&str] = &[
    "name",
    "kind",
    "max_per_second",
    // slack, teams
    "webhook_url",
    "webhook_url_file",
    // slack bot
    "bot_token",
    "bot_token_file",
    "channel",
    "api_url",
    // email
    "smtp_url",
    "smtp_username",
    "smtp_password",
    "smtp_password_file",
    "tls_ca_file",
    "from",
    "to",
    // webhook
    "url",
    "secret",
    "secret_file",
];
const KINDS: &[&str] = &["slack", "teams", "email", "webhook", "preview"];

/// What `[notifications]` says.
#[derive(Clone, Debug, Default)]
pub struct NotificationSettings {
    /// Every channel, by name.
    pub channels: Channels,
    /// The e-mail channel a requester's outcome mail (`notify_requester = true`) goes
    /// through: `requester_channel`, else the only e-mail channel there is.
    pub requester_channel: Option<String>,
}

/// Resolves `[notifications]`; nothing configured when it is absent.
pub(crate) fn resolve(ctx: &mut Ctx, root: &Fields<'_>) -> NotificationSettings {
    let Some(node) = root.get("notifications") else {
        return NotificationSettings::default();
    };
    let Some(f) = Fields::open(ctx, node, "notifications".into(), KEYS) else {
        return NotificationSettings::default();
    };
    let mut channels = Vec::new();
    let mut seen = BTreeSet::new();
    if let Some(list) = f.get("channels") {
        let items = ctx.tables(list, "notifications.channels", "[[notifications.channels]]");
        for (i, item) in items.iter().enumerate() {
            let path = format!("notifications.channels[{}]", element_label(item, i));
            if let Some(c) = channel(ctx, item, path.clone()) {
                if !seen.insert(c.name.clone()) {
                    ctx.report(
                        &item.origin,
                        &path,
                        format!("channel '{}' is defined twice", c.name),
                    );
                    continue;
                }
                channels.push(c);
            }
        }
    }
    let emails: Vec<&ChannelSpec> = channels
        .iter()
        .filter(|c| matches!(c.kind, ChannelKind::Email(_)))
        .collect();
    let requester_channel = match (
        f.get("requester_channel"),
        f.string(ctx, "requester_channel"),
    ) {
        (Some(n), Some(name)) => {
            if emails.iter().any(|c| c.name == name) {
                Some(name.to_owned())
            } else {
                ctx.report(
                    &n.origin,
                    &f.key("requester_channel"),
                    format!("'{name}' is not an e-mail channel of [[notifications.channels]]"),
                );
                None
            }
        }
        (Some(_), None) => None,
        (None, _) => match emails.as_slice() {
            [only] => Some(only.name.clone()),
            _ => None,
        },
    };
    NotificationSettings {
        channels: Channels::new(channels),
        requester_channel,
    }
}

fn channel(ctx: &mut Ctx, node: &Node, path: String) -> Option<ChannelSpec> {
    let f = Fields::open(ctx, node, path, CHANNEL_KEYS)?;
    let name = match f.get("name") {
        None => {
            f.missing(ctx, "name", "missing: every channel needs a name, e.g. name = \"sre-slack\"");
            None
        }
        Some(n) => f.string(ctx, "name").and_then(|name| {
            if is_name(name, &['-', '_'], 63) {
                Some(name.to_owned())
            } else {
                ctx.report(
                    &n.origin,
                    &f.key("name"),
                    format!("'{name}' is not a valid channel name: use lowercase letters, digits, '-' and '_', starting with a letter, at most 63 characters"),
                );
                None
            }
        }),
    };
    let kind = match f.get("kind") {
        None => {
            f.missing(
                ctx,
                "kind",
                "missing: one of slack, teams, email, webhook or preview",
            );
            None
        }
        Some(_) => f.choice(ctx, "kind", KINDS),
    }?;
    // Keys that belong to another kind would be ignored silently: say so instead.
    let own: &[&str] = match kind {
        "slack" => &[
            "webhook_url",
            "webhook_url_file",
            "bot_token",
            "bot_token_file",
            "channel",
            "api_url",
        ],
        "teams" => &["webhook_url", "webhook_url_file"],
        "email" => &[
            "smtp_url",
            "smtp_username",
            "smtp_password",
            "smtp_password_file",
            "tls_ca_file",
            "from",
            "to",
        ],
        "webhook" => &["url", "secret", "secret_file"],
        _ => &[],
    };
    let mut stray = false;
    for key in CHANNEL_KEYS
        .iter()
        .filter(|k| !["name", "kind", "max_per_second"].contains(k))
    {
        if !own.contains(key)
            && let Some(n) = f.get(key)
        {
            ctx.report(
                &n.origin,
                &f.key(key),
                format!("{key} does not apply to a {kind} channel"),
            );
            stray = true;
        }
    }
    let max_per_second = match f.get("max_per_second") {
        None => Some(ChannelKind::default_rate(kind)),
        Some(_) => f
            .integer(ctx, "max_per_second", 1, 10_000)
            .and_then(|n| u32::try_from(n).ok())
            .map(f64::from),
    };
    let kind = match kind {
        "slack" => slack(ctx, &f),
        "teams" => {
            let url = webhook_url(
                ctx,
                &f,
                "missing: the Workflows webhook URL, as webhook_url_file = \"/run/secrets/…\"",
            )?;
            if url.expose().contains(".webhook.office.com") {
                let n = f.get("webhook_url_file").or(f.get("webhook_url"));
                if let Some(n) = n {
                    ctx.report(&n.origin, &f.key("webhook_url_file"), "this is an Office 365 connector URL; connectors are retired: create a Workflows webhook (\"When a Teams webhook request is received\") and use its URL");
                }
                return None;
            }
            Some(ChannelKind::Teams(TeamsSpec { url }))
        }
        "email" => email(ctx, &f).map(ChannelKind::Email),
        "webhook" => {
            let url = match (f.get("url"), f.string(ctx, "url")) {
                (Some(n), Some(text)) => match check_url(text, true, false) {
                    Ok(_) => Some(text.to_owned()),
                    Err(e) => {
                        ctx.report(&n.origin, &f.key("url"), e);
                        None
                    }
                },
                (None, _) => {
                    f.missing(ctx, "url", "missing: where to POST the notifications");
                    None
                }
                _ => None,
            };
            let secret = f
                .required_secret(ctx, "secret", "secret_file", "missing: the signing secret (whsec_…), as secret_file = \"/run/secrets/…\"")
                .and_then(|(s, n, key)| {
                    if s.expose().strip_prefix("whsec_").is_none_or(str::is_empty) {
                        ctx.report(&n.origin, &key, "a webhook secret must start with whsec_ followed by the key (the Standard Webhooks format)");
                        None
                    } else {
                        Some(s)
                    }
                });
            Some(ChannelKind::Webhook(WebhookChannelSpec {
                url: url?,
                secret: secret?,
            }))
        }
        _ => Some(ChannelKind::Preview),
    };
    if stray {
        return None;
    }
    Some(ChannelSpec {
        name: name?,
        kind: kind?,
        max_per_second: max_per_second?,
    })
}

/// A chat webhook URL (inline or from a file): a secret, never quoted.
fn webhook_url(
    ctx: &mut Ctx,
    f: &Fields<'_>,
    missing: &str,
) -> Option<countersign_core::secret::Secret> {
    let (url, node, key) = f.required_secret(ctx, "webhook_url", "webhook_url_file", missing)?;
    match check_url(url.expose(), false, false) {
        Ok(_) => Some(url),
        Err(e) => {
            ctx.report(&node.origin, &key, e);
            None
        }
    }
}

fn slack(ctx: &mut Ctx, f: &Fields<'_>) -> Option<ChannelKind> {
    let bot = f.has("bot_token") || f.has("bot_token_file");
    if bot {
        if f.has("webhook_url") || f.has("webhook_url_file") {
            let n = f.get("webhook_url_file").or(f.get("webhook_url"))?;
            ctx.report(
                &n.origin,
                &f.key("webhook_url"),
                "set either a webhook URL or a bot token, not both",
            );
            return None;
        }
        let token = f
            .required_secret(
                ctx,
                "bot_token",
                "bot_token_file",
                "missing: the bot token (xoxb-…)",
            )
            .map(|(s, _, _)| s);
        let channel = match f.get("channel") {
            None => {
                f.missing(ctx, "channel", "missing: a bot posts to one channel: its ID, e.g. channel = \"C0123ABCD\" (the bot must be invited, or have chat:write.public)");
                None
            }
            Some(n) => f.string(ctx, "channel").and_then(|c| {
                if !c.is_empty() && c.len() <= 40 && c.chars().all(|ch| ch.is_ascii_alphanumeric())
                {
                    Some(c.to_owned())
                } else {
                    ctx.report(
                        &n.origin,
                        &f.key("channel"),
                        "expected a channel ID such as C0123ABCD (not a #name)",
                    );
                    None
                }
            }),
        };
        let api_url = match (f.get("api_url"), f.string(ctx, "api_url")) {
            (None, _) => Some(SLACK_API_URL.to_owned()),
            (Some(n), Some(text)) => match check_url(text, false, true) {
                Ok(_) => Some(text.trim_end_matches('/').to_owned()),
                Err(e) => {
                    ctx.report(&n.origin, &f.key("api_url"), e);
                    None
                }
            },
            _ => None,
        };
        return Some(ChannelKind::Slack(SlackSpec::Bot {
            token: token?,
            channel: channel?,
            api_url: api_url?,
        }));
    }
    let url = webhook_url(
        ctx,
        f,
        "missing: an incoming webhook URL (webhook_url_file = \"/run/secrets/…\") or a bot token (bot_token_file and channel)",
    )?;
    Some(ChannelKind::Slack(SlackSpec::Webhook { url }))
}

fn email(ctx: &mut Ctx, f: &Fields<'_>) -> Option<EmailSpec> {
    let server = match (f.get("smtp_url"), f.string(ctx, "smtp_url")) {
        (None, _) => {
            f.missing(ctx, "smtp_url", "missing: the mail server, e.g. smtp_url = \"smtp://mail.example.com:587\" (STARTTLS) or \"smtps://…:465\"");
            None
        }
        (Some(n), Some(text)) => match smtp_url(text) {
            Ok(s) => Some(s),
            Err(e) => {
                ctx.report(&n.origin, &f.key("smtp_url"), e);
                None
            }
        },
        _ => None,
    };
    let username = f.string(ctx, "smtp_username").map(str::to_owned);
    let password = if f.has("smtp_password") || f.has("smtp_password_file") {
        f.required_secret(ctx, "smtp_password", "smtp_password_file", "")
            .map(|(s, _, _)| Some(s))
    } else {
        Some(None)
    };
    if username.is_some() != matches!(password, Some(Some(_))) && password.is_some() {
        let n = f
            .get("smtp_username")
            .or(f.get("smtp_password_file"))
            .or(f.get("smtp_password"));
        if let Some(n) = n {
            ctx.report(
                &n.origin,
                &f.key("smtp_username"),
                "set both smtp_username and smtp_password_file, or neither",
            );
        }
        return None;
    }
    let ca_pem = match f.get("tls_ca_file") {
        None => Some(None),
        Some(n) => f.string(ctx, "tls_ca_file").and_then(|p| {
            let path = resolve_path(&ctx.base_dir(&n.origin), p);
            match std::fs::read_to_string(&path) {
                Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => Some(Some(text)),
                Ok(_) => {
                    ctx.report(
                        &n.origin,
                        &f.key("tls_ca_file"),
                        format!("'{}' holds no PEM certificate", path.display()),
                    );
                    None
                }
                Err(e) => {
                    ctx.report(
                        &n.origin,
                        &f.key("tls_ca_file"),
                        format!("cannot read '{}': {e}", path.display()),
                    );
                    None
                }
            }
        }),
    };
    let from = match f.get("from") {
        None => {
            f.missing(ctx, "from", "missing: the sender, e.g. from = \"countersign <approvals@example.com>\"");
            None
        }
        Some(n) => f.string(ctx, "from").and_then(|text| {
            if address_of(text).is_some() {
                Some(text.to_owned())
            } else {
                ctx.report(&n.origin, &f.key("from"), format!("'{text}' is not an address such as approvals@example.com or \"countersign <approvals@example.com>\""));
                None
            }
        }),
    };
    let (to, to_eligible) = match f.get("to") {
        None => {
            f.missing(ctx, "to", "missing: who gets the mail: addresses and/or \"eligible\" (the verified e-mails of the people who could approve)");
            (None, false)
        }
        Some(n) => match f.strings(ctx, "to") {
            Some(list) if !list.is_empty() => {
                let eligible = list.iter().any(|t| t == "eligible");
                let mut fixed = Vec::new();
                let mut ok = true;
                for t in list.into_iter().filter(|t| t != "eligible") {
                    if address_of(&t).is_some() {
                        fixed.push(t);
                    } else {
                        ctx.report(
                            &n.origin,
                            &f.key("to"),
                            format!("'{t}' is neither an address nor \"eligible\""),
                        );
                        ok = false;
                    }
                }
                (ok.then_some(fixed), eligible)
            }
            Some(_) => {
                ctx.report(
                    &n.origin,
                    &f.key("to"),
                    "must list at least one address or \"eligible\"",
                );
                (None, false)
            }
            None => (None, false),
        },
    };
    let (host, port, security) = server?;
    Some(EmailSpec {
        host,
        port,
        security,
        username,
        password: password?,
        ca_pem: ca_pem?,
        from: from?,
        to: to?,
        to_eligible,
    })
}

/// `smtp://host[:port]` (STARTTLS, required), `smtps://host[:port]` (implicit TLS), or
/// `smtp://host[:port]?tls=none` (plain, to a loopback address only). Credentials do not
/// belong in the URL: they go in `smtp_username` and `smtp_password_file`.
pub(crate) fn smtp_url(text: &str) -> Result<(String, u16, SmtpSecurity), String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "put the credentials in smtp_username and smtp_password_file, not in the URL".into(),
        );
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the URL names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let security = match (url.scheme(), tls.as_deref()) {
        ("smtps", None) => SmtpSecurity::ImplicitTls,
        ("smtp", None | Some("required")) => SmtpSecurity::StartTls,
        ("smtp", Some("none")) => {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err("mail without TLS is allowed only to a loopback address; use STARTTLS (smtp://) or implicit TLS (smtps://)".into());
            }
            SmtpSecurity::Plain
        }
        ("smtp", Some("opportunistic")) => {
            return Err("tls=opportunistic would fall back to plaintext; STARTTLS is required (leave tls out)".into());
        }
        ("smtp" | "smtps", Some(other)) => {
            return Err(format!(
                "unknown tls={other} (smtp:// requires STARTTLS; tls=none only to a loopback address)"
            ));
        }
        (other, _) => return Err(format!("'{other}' is not smtp or smtps")),
    };
    let port = url.port().unwrap_or(match security {
        SmtpSecurity::ImplicitTls => 465,
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::Plain => 25,
    });
    Ok((host, port, security))
}

/// The address of `name <address>` or of a bare address, when it looks like one.
fn address_of(text: &str) -> Option<&str> {
    let address = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        (None, None) => text.trim(),
        _ => return None,
    };
    let (local, domain) = address.split_once('@')?;
    (!local.is_empty()
        && domain.contains('.')
        && !address.contains(|c: char| c.is_whitespace() || c.is_control() || c == ','))
    .then_some(address)
}

/// Checks that every channel `names` references is configured (for gates and rules).
pub(crate) fn check_refs(
    ctx: &mut Ctx,
    node: &Node,
    key: &str,
    names: &[String],
    channels: &Channels,
) -> bool {
    let mut ok = true;
    for name in names {
        if channels.get(name).is_none() {
            let known: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();
            let known = if known.is_empty() {
                "none is configured: add [[notifications.channels]]".to_owned()
            } else {
                format!("configured: {}", known.join(", "))
            };
            ctx.report(
                &node.origin,
                key,
                format!("unknown channel '{name}' ({known})"),
            );
            ok = false;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        assert_eq!(
            smtp_url("smtp://mail.example.com").unwrap(),
            ("mail.example.com".into(), 587, SmtpSecurity::StartTls)
        );
        assert_eq!(
            smtp_url("smtps://mail.example.com").unwrap(),
            ("mail.example.com".into(), 465, SmtpSecurity::ImplicitTls)
        );
        assert_eq!(
            smtp_url("smtp://127.0.0.1:2525?tls=none").unwrap(),
            ("127.0.0.1".into(), 2525, SmtpSecurity::Plain)
        );
        assert!(smtp_url("smtp://mail.example.com?tls=none").is_err());
        assert!(smtp_url("smtp://mail.example.com?tls=opportunistic").is_err());
        assert!(smtp_url("smtp://u:p@mail.example.com").is_err());
        assert!(smtp_url("http://mail.example.com").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(address_of("a@b.example"), Some("a@b.example"));
        assert_eq!(address_of("countersign <a@b.example>"), Some("a@b.example"));
        assert_eq!(address_of("eligible"), None);
        assert_eq!(address_of("a@b"), None);
        assert_eq!(address_of("a@b.example, c@d.example"), None);
    }
}
