//! The `[[resource_servers]]` sections: the services that verify grant tokens and authenticate
//! to countersign's standards endpoints (token introspection) with client credentials.

use std::collections::HashMap;

use crate::check::{Ctx, Fields, element_label, is_name};
use crate::settings::ResourceServerConfig;
use crate::tree::{Node, Origin};

const KEYS: &[&str] = &["name", "client_id", "client_secret", "client_secret_file"];

/// Names and client ids seen so far, with where they were written.
#[derive(Default)]
struct Seen {
    names: HashMap<String, Origin>,
    client_ids: HashMap<String, (Origin, String)>,
}

/// Resolves every `[[resource_servers]]` (none is fine).
pub(crate) fn resolve_all(ctx: &mut Ctx, root: &Fields<'_>) -> Vec<ResourceServerConfig> {
    let Some(node) = root.get("resource_servers") else {
        return Vec::new();
    };
    let items = ctx.tables(node, "resource_servers", "[[resource_servers]]");
    let mut seen = Seen::default();
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| resolve_one(ctx, item, i, &mut seen))
        .collect()
}

fn resolve_one(
    ctx: &mut Ctx,
    node: &Node,
    index: usize,
    seen: &mut Seen,
) -> Option<ResourceServerConfig> {
    let path = format!("resource_servers[{}]", element_label(node, index));
    let f = Fields::open(ctx, node, path, KEYS)?;

    let name = match f.get("name") {
        None => {
            f.missing(
                ctx,
                "name",
                "missing: every resource server needs a name, e.g. name = \"deployer\"",
            );
            None
        }
        Some(n) => f.string(ctx, "name").and_then(|name| {
            if !is_name(name, &['-', '_'], 40) {
                ctx.report(
                    &n.origin,
                    &f.key("name"),
                    format!(
                        "'{name}' is not a valid resource server name: use lowercase letters, digits, '-' and '_', starting with a letter, at most 40 characters"
                    ),
                );
                return None;
            }
            if let Some(first) = seen.names.get(name) {
                let at = ctx.describe(first);
                ctx.report(
                    &n.origin,
                    &f.key("name"),
                    format!("resource server '{name}' is already defined at {at}"),
                );
                return None;
            }
            seen.names.insert(name.to_string(), n.origin.clone());
            Some(name.to_string())
        }),
    };

    let client_id = match f.get("client_id") {
        None => {
            f.missing(
                ctx,
                "client_id",
                "missing: the client id the resource server authenticates with",
            );
            None
        }
        Some(n) => f.text(ctx, "client_id").and_then(|id| {
            if let Some((first, owner)) = seen.client_ids.get(id) {
                let at = ctx.describe(first);
                ctx.report(
                    &n.origin,
                    &f.key("client_id"),
                    format!(
                        "client_id '{id}' is already used by resource server '{owner}' at {at}"
                    ),
                );
                return None;
            }
            let owner = element_label(node, index);
            seen.client_ids
                .insert(id.to_string(), (n.origin.clone(), owner));
            Some(id.to_string())
        }),
    };

    let client_secret = f
        .required_secret(
            ctx,
            "client_secret",
            "client_secret_file",
            "missing: set client_secret_file (a file holding the secret the resource server authenticates with) or client_secret",
        )
        .map(|(secret, _, _)| secret);

    Some(ResourceServerConfig {
        name: name?,
        client_id: client_id?,
        client_secret: client_secret?,
    })
}
