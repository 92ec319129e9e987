//! The `[[issuers]]` sections: the OIDC providers countersign trusts, with the per-provider
//! claim mapping real providers need (`research/idp-claim-shapes.md`).

use std::collections::HashMap;

use chrono::Duration;
use countersign_core::PrincipalKind;

use crate::check::{Ctx, Fields, check_url, element_label, is_name};
use crate::settings::{IssuerConfig, SUPPORTED_ALGORITHMS};
use crate::tree::{Node, Origin, Value};

const KEYS: &[&str] = &[
    "name",
    "url",
    "kind",
    "client_id",
    "client_secret",
    "client_secret_file",
    "cli_client_id",
    "scopes",
    "audiences",
    "algorithms",
    "subject_claim",
    "groups_claim",
    "actor_claim",
    "actor_issuer",
    "token_types",
    "jwks_ttl",
];

const DEFAULT_SCOPES: &[&str] = &["openid", "profile", "email"];
const DEFAULT_ALGORITHMS: &[&str] = &["RS256", "ES256", "EdDSA"];

/// Resolves every `[[issuers]]`.
pub(crate) fn resolve_all(ctx: &mut Ctx, root: &Fields<'_>) -> Vec<IssuerConfig> {
    let Some(node) = root.get("issuers") else {
        root.missing(
            ctx,
            "issuers",
            "missing: configure at least one [[issuers]] section (the OIDC provider people and workloads sign in with)",
        );
        return Vec::new();
    };
    let items = ctx.tables(node, "issuers", "[[issuers]]");
    if items.is_empty() && matches!(node.value, Value::Array(_)) {
        ctx.report(
            &node.origin,
            "issuers",
            "configure at least one [[issuers]] section",
        );
    }
    // Every name first, so that `actor_issuer` may point at an issuer defined later.
    let mut names: Vec<String> = items
        .iter()
        .filter_map(|n| match &n.value {
            Value::Table(t) => t.get("name").and_then(|n| match (&n.value, &n.env_text) {
                (Value::String(s), _) => Some(s.clone()),
                (_, Some(t)) => Some(t.clone()),
                _ => None,
            }),
            _ => None,
        })
        .collect();
    let mut unique = Vec::with_capacity(names.len());
    for n in names.drain(..) {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    let names = unique;
    let mut seen: HashMap<String, Origin> = HashMap::new();
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| resolve_one(ctx, item, i, &names, &mut seen))
        .collect()
}

fn resolve_one(
    ctx: &mut Ctx,
    node: &Node,
    index: usize,
    names: &[String],
    seen: &mut HashMap<String, Origin>,
) -> Option<IssuerConfig> {
    let path = format!("issuers[{}]", element_label(node, index));
    let f = Fields::open(ctx, node, path, KEYS)?;

    let name = match f.get("name") {
        None => {
            f.missing(ctx, "name", "missing: every issuer needs a name, e.g. name = \"okta\"");
            None
        }
        Some(n) => f.string(ctx, "name").and_then(|name| {
            if !is_name(name, &['-', '_'], 40) {
                ctx.report(
                    &n.origin,
                    &f.key("name"),
                    format!(
                        "'{name}' is not a valid issuer name: use lowercase letters, digits, '-' and '_', starting with a letter, at most 40 characters"
                    ),
                );
                return None;
            }
            if let Some(first) = seen.get(name) {
                let at = ctx.describe(first);
                ctx.report(
                    &n.origin,
                    &f.key("name"),
                    format!("issuer '{name}' is already defined at {at}"),
                );
                return None;
            }
            seen.insert(name.to_string(), n.origin.clone());
            Some(name.to_string())
        }),
    };

    let url = match f.get("url") {
        None => {
            f.missing(
                ctx,
                "url",
                "missing: the issuer URL, e.g. https://acme.okta.com/oauth2/default",
            );
            None
        }
        Some(n) => f.string(ctx, "url").and_then(|text| {
            let checked = check_url(text, false, true).and_then(|u| match u.query() {
                Some(_) => Err(format!("'{text}' must not have a ?query")),
                None => Ok(()),
            });
            match checked {
                // Kept exactly as written: discovery metadata must match it byte for byte,
                // and a parsed URL would add a trailing slash to a bare host.
                Ok(()) => Some(text.to_string()),
                Err(e) => {
                    ctx.report(&n.origin, &f.key("url"), e);
                    None
                }
            }
        }),
    };

    let kind = match f.choice(ctx, "kind", &["human", "workload"]) {
        Some("workload") => PrincipalKind::Workload,
        _ => PrincipalKind::Human,
    };

    let client_id = f.text(ctx, "client_id").map(str::to_string);
    let cli_client_id = f.text(ctx, "cli_client_id").map(str::to_string);
    let client_secret = if f.exclusive(ctx, "client_secret", "client_secret_file") {
        match (f.get("client_secret"), f.get("client_secret_file")) {
            (Some(n), _) => ctx.inline_secret(n, &f.key("client_secret")),
            (_, Some(n)) => ctx.read_secret_file(n, &f.key("client_secret_file")),
            _ => None,
        }
    } else {
        None
    };
    if f.get("client_id").is_none()
        && let Some(n) = f.get("client_secret").or(f.get("client_secret_file"))
    {
        let key = if f.has("client_secret") {
            "client_secret"
        } else {
            "client_secret_file"
        };
        ctx.report(
            &n.origin,
            &f.key(key),
            "a client secret needs a client_id to go with it",
        );
    }

    let scopes = match f.strings(ctx, "scopes") {
        None => DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            if let Some(n) = f.get("scopes") {
                if list.is_empty() {
                    ctx.report(
                        &n.origin,
                        &f.key("scopes"),
                        "must not be empty (the default is openid, profile, email)",
                    );
                }
                for s in &list {
                    if s.is_empty() || s.contains(char::is_whitespace) {
                        ctx.report(
                            &n.origin,
                            &f.key("scopes"),
                            format!("'{s}' is not a scope: scopes are single words"),
                        );
                    }
                }
            }
            list
        }
    };

    let audiences = match f.get("audiences") {
        None => {
            f.missing(
                ctx,
                "audiences",
                "missing: the aud values bearer tokens must carry, e.g. audiences = [\"api://countersign\"]",
            );
            Vec::new()
        }
        Some(n) => match f.strings(ctx, "audiences") {
            None => Vec::new(),
            Some(list) => {
                if list.is_empty() {
                    ctx.report(
                        &n.origin,
                        &f.key("audiences"),
                        "must name at least one audience: otherwise a token meant for any other service would be accepted",
                    );
                }
                if list.iter().any(|a| a.trim().is_empty()) {
                    ctx.report(
                        &n.origin,
                        &f.key("audiences"),
                        "an audience must not be empty",
                    );
                }
                list
            }
        },
    };

    let algorithms = match f.strings(ctx, "algorithms") {
        None => DEFAULT_ALGORITHMS.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            if let Some(n) = f.get("algorithms") {
                let allowed = SUPPORTED_ALGORITHMS.join(", ");
                if list.is_empty() {
                    ctx.report(
                        &n.origin,
                        &f.key("algorithms"),
                        format!("must name at least one algorithm (allowed: {allowed})"),
                    );
                }
                for alg in &list {
                    if SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
                        continue;
                    }
                    let why = if alg.eq_ignore_ascii_case("none") {
                        format!("'{alg}' is never accepted: unsigned tokens prove nothing")
                    } else if alg.to_ascii_uppercase().starts_with("HS") {
                        format!(
                            "'{alg}' is never accepted: an HMAC key would be shared with the provider"
                        )
                    } else {
                        format!("'{alg}' is not a supported algorithm")
                    };
                    ctx.report(
                        &n.origin,
                        &f.key("algorithms"),
                        format!("{why} (allowed: {allowed})"),
                    );
                }
            }
            list
        }
    };

    let subject_claim = claim(ctx, &f, "subject_claim", false).unwrap_or_else(|| "sub".into());
    let groups_claim = match f.get("groups_claim") {
        None => Some("groups".to_string()),
        // An empty groups_claim says the provider has none (Google).
        Some(_) => claim(ctx, &f, "groups_claim", true).filter(|c| !c.is_empty()),
    };
    let actor_claim = claim(ctx, &f, "actor_claim", false);
    let actor_issuer = f.text(ctx, "actor_issuer").map(str::to_string);
    if let (Some(a), Some(n)) = (&actor_issuer, f.get("actor_issuer")) {
        if !names.contains(a) {
            ctx.report(
                &n.origin,
                &f.key("actor_issuer"),
                format!("no issuer named '{a}' (configured: {})", names.join(", ")),
            );
        } else if actor_claim.is_none() && !f.has("actor_claim") {
            ctx.report(
                &n.origin,
                &f.key("actor_issuer"),
                "actor_issuer needs actor_claim: it says which issuer the actor_claim value is a subject of",
            );
        }
    }

    let token_types = match (f.get("token_types"), f.strings(ctx, "token_types")) {
        (Some(n), Some(list)) => {
            if list.is_empty() || list.iter().any(|t| t.trim().is_empty()) {
                ctx.report(
                    &n.origin,
                    &f.key("token_types"),
                    "must list at least one non-empty token type (leave it out to accept any)",
                );
            }
            Some(list)
        }
        _ => None,
    };
    let jwks_ttl = f.duration(ctx, "jwks_ttl").unwrap_or(Duration::minutes(10));

    Some(IssuerConfig {
        name: name?,
        url: url?,
        kind,
        client_id,
        client_secret,
        cli_client_id,
        scopes,
        audiences,
        algorithms,
        subject_claim,
        groups_claim,
        actor_claim,
        actor_issuer,
        token_types,
        jwks_ttl,
    })
}

/// A claim name or dotted path into the token (`realm_access.roles`).
fn claim(ctx: &mut Ctx, f: &Fields<'_>, key: &str, allow_empty: bool) -> Option<String> {
    let n = f.get(key)?;
    let text = f.string(ctx, key)?;
    if text.is_empty() && allow_empty {
        return Some(String::new());
    }
    if text.trim().is_empty()
        || text.starts_with('.')
        || text.ends_with('.')
        || text.contains("..")
        || text.contains(char::is_whitespace)
    {
        ctx.report(
            &n.origin,
            &f.key(key),
            format!("'{text}' is not a claim name or dotted path such as realm_access.roles"),
        );
        return None;
    }
    Some(text.to_string())
}
