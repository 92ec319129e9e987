//! The OpenAPI document served at `/api/v1/openapi.json` describes the router exactly: every
//! route and nothing else, every `$ref` resolves, every error code the code can answer with is
//! listed, and real responses (built by the same view functions the handlers use) conform to
//! the schemas.

// Helpers outside `#[test]` functions panic on a malformed document or source too.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use countersign_server::api::{OPENAPI, views};
use serde_json::{Value, json};

/// The router's source: routes are read from it so an undocumented new route fails this test.
const MOD_RS: &str = include_str!("../src/api/mod.rs");

/// Every `(method, path)` the router serves under `/api/v1` (from `api/mod.rs`).
const API_ROUTES: &[(&str, &str)] = &[
    ("get", "/openapi.json"),
    ("get", "/auth/config"),
    ("get", "/gates"),
    ("post", "/requests"),
    ("get", "/requests"),
    ("get", "/requests/{id}"),
    ("post", "/requests/{id}/approve"),
    ("post", "/requests/{id}/reject"),
    ("post", "/requests/{id}/cancel"),
    ("post", "/requests/{id}/revoke"),
    ("post", "/requests/{id}/token"),
    ("get", "/requests/{id}/events"),
    ("get", "/inbox/events"),
    ("get", "/webhooks/deliveries"),
    ("post", "/webhooks/deliveries/{id}/retry"),
    ("get", "/audit"),
];

/// Every `(method, path)` the router serves outside `/api/v1` (from `api/mod.rs`).
const ROOT_ROUTES: &[(&str, &str)] = &[
    ("get", "/.well-known/openid-configuration"),
    ("get", "/.well-known/jwks.json"),
    ("post", "/oauth/introspect"),
    ("post", "/oauth/revoke"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

/// The root routes the document describes (with a path-level `servers: [{"url": "/"}]`). The
/// OAuth and `.well-known` endpoints follow their own specifications and are not described.
const DOCUMENTED_ROOT_ROUTES: &[(&str, &str)] = &[("get", "/healthz"), ("get", "/readyz")];

/// The operations that need no bearer token.
const UNAUTHENTICATED: &[(&str, &str)] = &[
    ("get", "/openapi.json"),
    ("get", "/auth/config"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// API source files whose error codes are not part of this document (the OAuth and
/// `.well-known` handlers answer outside `/api/v1`, in their standards' shapes).
const UNDOCUMENTED_SOURCES: &[&str] = &["oauth.rs", "wellknown.rs"];

fn doc() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is valid JSON")
}

/// `(method, path)` pairs.
type Routes = BTreeSet<(String, String)>;

fn set(routes: &[(&str, &str)]) -> Routes {
    routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

fn read_source(relative: &str) -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(path).ok()
}

// ---------------------------------------------------------------------------------------------
// A small Rust source scanner (enough for string literals and balanced brackets).

/// The end (exclusive) of the string literal starting at `start` (a `"`).
fn string_end(src: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < src.len() {
        match src[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    src.len()
}

/// The index of the bracket closing the one at `open`.
fn matching_close(src: &str, open: usize) -> usize {
    let bytes = src.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i = string_end(bytes, i);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced brackets from byte {open}");
}

/// The first string literal in `text`, unescaped simply.
fn first_string(text: &str) -> Option<String> {
    let start = text.find('"')?;
    let end = string_end(text.as_bytes(), start);
    Some(text[start + 1..end - 1].replace("\\\"", "\""))
}

/// Whether the line holding byte `at` is a comment.
fn in_comment(src: &str, at: usize) -> bool {
    let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
    src[line_start..at].contains("//")
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `(method, path)` of every `.route("...", ...)` in `src[range]`.
fn routes_in(src: &str, from: usize, to: usize) -> Routes {
    let mut out = BTreeSet::new();
    let mut at = from;
    while let Some(found) = src[at..to].find(".route(") {
        let open = at + found + ".route".len();
        at = open;
        if in_comment(src, open) {
            continue;
        }
        let close = matching_close(src, open);
        let args = &src[open + 1..close];
        let path = first_string(args)
            .unwrap_or_else(|| panic!("a route without a literal path: .route({args})"));
        let bytes = args.as_bytes();
        let mut methods = Vec::new();
        for method in METHODS {
            let mut i = 0;
            while let Some(pos) = args[i..].find(&format!("{method}(")) {
                let p = i + pos;
                let before = if p == 0 { b' ' } else { bytes[p - 1] };
                if !is_ident(before) && before != b':' {
                    methods.push(method.to_string());
                }
                i = p + 1;
            }
        }
        assert!(!methods.is_empty(), "no method found in .route({args})");
        for m in methods {
            assert!(
                out.insert((m.clone(), path.clone())),
                "{m} {path} is routed twice"
            );
        }
    }
    out
}

/// The routes of `api/mod.rs`: those of the router nested under `/api/v1`, and the others.
fn routes_in_mod_rs() -> (Routes, Routes) {
    assert!(
        MOD_RS.contains(".nest(\"/api/v1\", api)"),
        "api/mod.rs no longer nests `api` under /api/v1; update this test"
    );
    let start = MOD_RS
        .find("let api = Router::new()")
        .expect("api/mod.rs builds `let api = Router::new()`");
    let end = start
        + MOD_RS[start..]
            .find(';')
            .expect("the api router ends with ;");
    let api = routes_in(MOD_RS, start, end);
    let mut root = routes_in(MOD_RS, 0, start);
    root.extend(routes_in(MOD_RS, end, MOD_RS.len()));
    (api, root)
}

/// Top-level keys of every `json!({...})` object in `src[from..to]`, in order of appearance.
fn json_objects(src: &str, from: usize, to: usize) -> Vec<BTreeSet<String>> {
    let mut out = Vec::new();
    let mut at = from;
    while let Some(found) = src[at..to].find("json!({") {
        let open = at + found + "json!(".len();
        let close = matching_close(src, open);
        out.push(object_keys(&src[open..=close]));
        at = open + 1;
    }
    out
}

/// The keys at depth 1 of the object literal `text` (starting with `{`).
fn object_keys(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut keys = BTreeSet::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i);
                if depth == 1 && text[end..].trim_start().starts_with(':') {
                    keys.insert(text[i + 1..end - 1].to_string());
                }
                i = end;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    keys
}

/// The byte range of the body of the first `fn NAME(` in `src`.
fn function_body(src: &str, name: &str) -> Option<(usize, usize)> {
    let start = src.find(&format!("fn {name}("))?;
    let open = start + src[start..].find('{')?;
    Some((open, matching_close(src, open)))
}

// ---------------------------------------------------------------------------------------------
// A small JSON Schema checker for the keywords the document uses.

/// Hand-written matchers for the patterns in the document (no regex crate here).
fn matches_pattern(pattern: &str, s: &str) -> Option<bool> {
    const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ulid = |t: &str| t.len() == 26 && t.chars().all(|c| CROCKFORD.contains(c));
    let hex = |t: &str, n: usize| {
        t.len() == n
            && t.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let duration = |t: &str| {
        let mut digits = 0;
        for c in t.chars() {
            if c.is_ascii_digit() {
                digits += 1;
            } else if "smhd".contains(c) && digits > 0 {
                digits = 0;
            } else {
                return false;
            }
        }
        !t.is_empty() && digits == 0
    };
    Some(match pattern {
        "^req_[0-9A-HJKMNP-TV-Z]{26}$" => s.strip_prefix("req_").is_some_and(ulid),
        "^msg_[0-9A-HJKMNP-TV-Z]{26}$" => s.strip_prefix("msg_").is_some_and(ulid),
        "^sha256:[0-9a-f]{64}$" => s.strip_prefix("sha256:").is_some_and(|t| hex(t, 64)),
        "^[0-9a-f]{64}$" => hex(s, 64),
        "^[0-9a-f]{32}$" => hex(s, 32),
        "^([0-9]+[smhd])+$" => duration(s),
        "^(([0-9]+[smhd])+)?$" => s.is_empty() || duration(s),
        _ => return None,
    })
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        other => panic!("unknown type {other}"),
    }
}

/// Checks `value` against `schema`, pushing problems to `errors`. When `strict`, an object may
/// not carry keys its schema's `properties` do not name (unless `additionalProperties` is a
/// schema): a response key missing from the document is a documentation bug.
fn check(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    strict: bool,
    errors: &mut Vec<String>,
) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = doc
            .pointer(&r[1..])
            .unwrap_or_else(|| panic!("{r} does not resolve"));
        return check(doc, target, value, at, strict, errors);
    }
    // Parts of a composition each name only some keys.
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check(doc, part, value, at, false, errors);
    }
    if let Some(t) = schema.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, value),
            Value::Array(ts) => ts.iter().any(|t| type_matches(t.as_str().unwrap(), value)),
            _ => panic!("bad type at {at}"),
        };
        if !ok {
            errors.push(format!("{at}: {value} is not of type {t}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {e:?}"));
    }
    if let Some(c) = schema.get("const")
        && c != value
    {
        errors.push(format!("{at}: {value} is not {c}"));
    }
    if let Some(s) = value.as_str() {
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            match matches_pattern(p, s) {
                Some(true) => {}
                Some(false) => errors.push(format!("{at}: {s:?} does not match {p}")),
                None => errors.push(format!("{at}: the test has no matcher for pattern {p}")),
            }
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && chrono::DateTime::parse_from_rfc3339(s).is_err()
        {
            errors.push(format!("{at}: {s:?} is not a date-time"));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && s.chars().count() as u64 > max
        {
            errors.push(format!("{at}: longer than {max}"));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errors.push(format!("{at}: {n} < {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errors.push(format!("{at}: {n} > {max}"));
        }
    }
    if let Some(obj) = value.as_object() {
        let empty = serde_json::Map::new();
        let props = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                errors.push(format!("{at}: required key {r} is missing"));
            }
        }
        let additional = schema.get("additionalProperties");
        for (k, v) in obj {
            let here = format!("{at}.{k}");
            if let Some(p) = props.get(k) {
                check(doc, p, v, &here, strict, errors);
            } else if let Some(extra) = additional.filter(|a| a.is_object()) {
                check(doc, extra, v, &here, strict, errors);
            } else if additional == Some(&Value::Bool(false))
                || (strict && schema.get("properties").is_some())
            {
                errors.push(format!("{at}: key {k} is not documented"));
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(doc, items, v, &format!("{at}[{i}]"), strict, errors);
        }
    }
}

fn assert_conforms(doc: &Value, schema: &Value, value: &Value) {
    let mut errors = Vec::new();
    check(doc, schema, value, "$", true, &mut errors);
    assert!(
        errors.is_empty(),
        "{value:#}\ndoes not conform:\n{}",
        errors.join("\n")
    );
}

fn schema(doc: &Value, name: &str) -> Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name}");
    s.clone()
}

fn property_names(doc: &Value, name: &str) -> BTreeSet<String> {
    schema(doc, name)["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} has no properties"))
        .keys()
        .cloned()
        .collect()
}

fn required_names(doc: &Value, name: &str) -> BTreeSet<String> {
    schema(doc, name)["required"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Walking the document.

/// Every operation: `(method, path, is_root, operation, path item)`.
fn operations(doc: &Value) -> Vec<(String, String, bool, Value, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let root = match item.get("servers").and_then(Value::as_array) {
            None => false,
            Some(servers) => {
                assert!(
                    servers.len() == 1 && servers[0]["url"] == "/",
                    "{path}: the only path-level server is the root"
                );
                true
            }
        };
        for (key, op) in item.as_object().unwrap() {
            if METHODS.contains(&key.as_str()) {
                out.push((key.clone(), path.clone(), root, op.clone(), item.clone()));
            } else {
                assert!(
                    ["parameters", "servers", "summary", "description"].contains(&key.as_str()),
                    "{path}: unexpected key {key}"
                );
            }
        }
    }
    out
}

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(&r[1..])
            .unwrap_or_else(|| panic!("{r} does not resolve")),
        None => value,
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn it_is_openapi_3_1() {
    let doc = doc();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi is {}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "countersign");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["info"]["description"].is_string());
    assert_eq!(doc["servers"], json!([{"url": "/api/v1"}]));
    assert!(
        OPENAPI.starts_with("{\n  \""),
        "keep the file indented by two spaces"
    );
}

#[test]
fn the_route_list_matches_the_router_source() {
    let (api, root) = routes_in_mod_rs();
    assert_eq!(
        api,
        set(API_ROUTES),
        "api/mod.rs routes changed: update API_ROUTES and document the change in openapi.json"
    );
    assert_eq!(
        root,
        set(ROOT_ROUTES),
        "api/mod.rs root routes changed: update ROOT_ROUTES (and openapi.json if it belongs there)"
    );
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = doc();
    let mut api = BTreeSet::new();
    let mut root = BTreeSet::new();
    for (method, path, is_root, _, _) in operations(&doc) {
        if is_root {
            root.insert((method, path));
        } else {
            api.insert((method, path));
        }
    }
    assert_eq!(api, set(API_ROUTES), "documented /api/v1 operations");
    assert_eq!(
        root,
        set(DOCUMENTED_ROOT_ROUTES),
        "documented root operations"
    );
    assert!(set(DOCUMENTED_ROOT_ROUTES).is_subset(&set(ROOT_ROUTES)));
}

#[test]
fn every_ref_resolves_and_every_component_is_used() {
    let doc = doc();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        assert!(r.starts_with("#/components/"), "{r} is not local");
        assert!(doc.pointer(&r[1..]).is_some(), "{r} does not resolve");
    }
    let used: BTreeSet<&str> = all.iter().map(String::as_str).collect();
    for kind in ["schemas", "responses", "parameters"] {
        for name in doc["components"][kind].as_object().unwrap().keys() {
            let r = format!("#/components/{kind}/{name}");
            assert!(used.contains(r.as_str()), "{r} is never used");
        }
    }
}

#[test]
fn every_operation_is_complete() {
    let doc = doc();
    let mut ids = BTreeSet::new();
    let mut status_component: BTreeMap<String, String> = BTreeMap::new();
    let unauthenticated = set(UNAUTHENTICATED);
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["type"],
        "http"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["bearerFormat"],
        "JWT"
    );
    for (method, path, _, op, item) in operations(&doc) {
        let here = format!("{} {path}", method.to_uppercase());
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{here} has no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        assert!(op["summary"].is_string(), "{here} has no summary");

        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{here} has no responses"));
        assert!(
            responses.keys().any(|s| s.len() == 3 && s.starts_with('2')),
            "{here} has no 2xx response"
        );
        for (status, response) in responses {
            assert!(
                status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()),
                "{here}: status {status}"
            );
            assert!(
                resolve(&doc, response)["description"].is_string(),
                "{here} {status} has no description"
            );
            if status.starts_with('4') || status.starts_with('5') {
                if path == "/readyz" && status == "503" {
                    continue; // not an error shape: the readiness report
                }
                let r = response["$ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{here} {status} is not a shared response"));
                let name = r
                    .strip_prefix("#/components/responses/")
                    .unwrap_or_else(|| panic!("{here} {status}: {r}"));
                let previous = status_component.insert(status.clone(), name.to_string());
                assert!(
                    previous.is_none_or(|p| p == name),
                    "{status} refers to two shared responses"
                );
            }
        }

        // Authentication.
        let open = unauthenticated.contains(&(method.clone(), path.clone()));
        if open {
            assert_eq!(op["security"], json!([]), "{here} needs no token");
        } else {
            assert!(
                op.get("security").is_none(),
                "{here} uses the global bearer"
            );
            assert!(
                responses.contains_key("401"),
                "{here} needs a token and can answer 401"
            );
        }

        // Path parameters: each template variable is declared, and nothing else.
        let mut declared = BTreeSet::new();
        for p in item["parameters"]
            .as_array()
            .into_iter()
            .chain(op["parameters"].as_array())
            .flatten()
        {
            let p = resolve(&doc, p);
            assert!(
                p["schema"].is_object(),
                "{here}: parameter without a schema"
            );
            if p["in"] == "path" {
                assert_eq!(p["required"], true);
                declared.insert(p["name"].as_str().unwrap().to_string());
            } else {
                assert_eq!(p["in"], "query", "{here}: parameters are query or path");
            }
        }
        let template: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect();
        assert_eq!(declared, template, "{here}: path parameters");

        if let Some(body) = op.get("requestBody") {
            let schema = &body["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "{here}: the body is JSON");
            assert_eq!(
                resolve(&doc, schema)["additionalProperties"],
                false,
                "{here}: bodies refuse unknown fields (deny_unknown_fields)"
            );
        }
    }

    // Every shared error response is an `Error` with the codes it may carry.
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        let schema = &response["content"]["application/json"]["schema"];
        assert!(
            schema["allOf"]
                .as_array()
                .is_some_and(|a| a.contains(&json!({"$ref": "#/components/schemas/Error"}))),
            "{name} is not an Error"
        );
        assert!(
            codes_of(schema).next().is_some(),
            "{name} lists no error codes"
        );
    }
    assert!(
        doc["components"]["responses"][&status_component["401"]]["headers"]
            .get("WWW-Authenticate")
            .is_some(),
        "401 carries the challenge header"
    );
}

fn codes_of(schema: &Value) -> impl Iterator<Item = &str> {
    schema["allOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["properties"]["error"]["properties"]["code"]["enum"].as_array())
        .flatten()
        .filter_map(Value::as_str)
}

/// The codes documented for each status, from the shared responses.
fn documented_codes(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, _, _, op, _) in operations(doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            if response.get("$ref").is_none() {
                continue;
            }
            let schema = &resolve(doc, response)["content"]["application/json"]["schema"];
            out.entry(status.clone())
                .or_default()
                .extend(codes_of(schema).map(str::to_string));
        }
    }
    out
}

/// A string literal right after `text[at..]` (whitespace and commas skipped).
fn literal_after(text: &str, at: usize) -> Option<String> {
    let rest = text[at..].trim_start_matches(|c: char| c.is_whitespace() || c == ',');
    if rest.starts_with('"') {
        first_string(rest)
    } else {
        None
    }
}

/// `(variant, right-hand side)` for each `EngineError::Variant ... => rhs` arm in `body`.
fn engine_error_arms(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut at = 0;
    loop {
        let variant = body[at..].find("EngineError::").map(|i| at + i);
        let arrow = body[at..].find("=>").map(|i| at + i);
        match (variant, arrow) {
            (Some(v), a) if a.is_none_or(|a| v < a) => {
                let start = v + "EngineError::".len();
                let end = start + body[start..].find(|c: char| !is_ident(c as u8)).unwrap();
                pending.push(body[start..end].to_string());
                at = end;
            }
            (_, Some(a)) => {
                let line_end = a + body[a..].find('\n').unwrap_or(body.len() - a);
                let rhs = body[a + 2..line_end]
                    .trim()
                    .trim_end_matches(',')
                    .to_string();
                out.extend(pending.drain(..).map(|v| (v, rhs.clone())));
                at = line_end;
            }
            _ => break,
        }
    }
    out
}

fn status_of(name: &str) -> &'static str {
    match name {
        "BAD_REQUEST" => "400",
        "UNAUTHORIZED" => "401",
        "FORBIDDEN" => "403",
        "NOT_FOUND" => "404",
        "METHOD_NOT_ALLOWED" => "405",
        "CONFLICT" => "409",
        "GONE" => "410",
        "PAYLOAD_TOO_LARGE" => "413",
        "UNSUPPORTED_MEDIA_TYPE" => "415",
        "UNPROCESSABLE_ENTITY" => "422",
        "TOO_MANY_REQUESTS" => "429",
        "INTERNAL_SERVER_ERROR" => "500",
        "SERVICE_UNAVAILABLE" => "503",
        other => panic!("a status this test does not know: {other}"),
    }
}

#[test]
fn every_error_code_the_code_answers_with_is_documented() {
    let doc = doc();
    let documented = documented_codes(&doc);
    // (where, status, code)
    let mut found: Vec<(String, String, String)> = Vec::new();

    // The HTTP layer: ApiError::new(StatusCode::X, "code", ...) and bad_request("code", ...).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if !file.ends_with(".rs") || UNDOCUMENTED_SOURCES.contains(&file.as_str()) {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let mut at = 0;
        while let Some(i) = src[at..].find("StatusCode::") {
            let start = at + i + "StatusCode::".len();
            let end = start
                + src[start..]
                    .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                    .unwrap();
            if let Some(code) = literal_after(&src, end) {
                found.push((file.clone(), status_of(&src[start..end]).into(), code));
            }
            at = end;
        }
        let mut at = 0;
        while let Some(i) = src[at..].find("bad_request(") {
            let start = at + i + "bad_request(".len();
            if let Some(code) = literal_after(&src, start) {
                found.push((file.clone(), "400".into(), code));
            }
            at = start;
        }
        if src.contains("ApiError::unauthorized(") {
            found.push((file.clone(), "401".into(), "unauthenticated".into()));
        }
    }

    // Domain errors: the status of each variant (server `error.rs`) and its code (core).
    let server_error = read_source("src/api/error.rs").unwrap();
    let (from, to) = function_body(&server_error, "from").expect("From<EngineError> for ApiError");
    let mut status_of_variant = BTreeMap::new();
    for (variant, rhs) in engine_error_arms(&server_error[from..to]) {
        let status = if let Some(name) = rhs.strip_prefix("StatusCode::") {
            status_of(name)
        } else if rhs.contains("ApiError::internal") {
            "500"
        } else {
            panic!("error.rs maps {variant} to {rhs}; teach this test");
        };
        status_of_variant.insert(variant, status.to_string());
    }
    let core_error = read_source("../core/src/error.rs").unwrap();
    let (from, to) = function_body(&core_error, "code").expect("EngineError::code");
    for (variant, rhs) in engine_error_arms(&core_error[from..to]) {
        let Some(status) = status_of_variant.get(&variant) else {
            panic!("error.rs does not map EngineError::{variant}");
        };
        let code = if status == "500" {
            "internal".to_string() // ApiError::internal answers opaquely
        } else if let Some(code) = first_string(&rhs) {
            code
        } else {
            continue; // a code carried by the variant: found in engine.rs below
        };
        found.push((format!("EngineError::{variant}"), status.clone(), code));
    }

    // Codes carried by Invalid / Forbidden, from the engine.
    // The engine is a folder of modules, one per use case: read them as one text.
    let engine: String = [
        "mod", "create", "list", "decide", "finish", "grants", "audit",
    ]
    .iter()
    .map(|m| {
        read_source(&format!("../core/src/engine/{m}.rs"))
            .unwrap_or_else(|| panic!("core/src/engine/{m}.rs"))
    })
    .collect();
    let invalid = status_of_variant["Invalid"].clone();
    let forbidden = status_of_variant["Forbidden"].clone();
    for (call, status) in [
        ("EngineError::invalid(", &invalid),
        ("EngineError::forbidden(", &forbidden),
    ] {
        let mut at = 0;
        while let Some(i) = engine[at..].find(call) {
            let start = at + i + call.len();
            if let Some(code) = literal_after(&engine, start) {
                found.push(("engine.rs".into(), status.clone(), code));
            }
            at = start;
        }
    }
    // `text_field` picks its code at run time.
    assert!(engine.contains("\"reason_required\""));
    found.push((
        "engine.rs".into(),
        invalid.clone(),
        "reason_required".into(),
    ));
    // Refusals become Forbidden, except those with variants of their own (refuse_decision).
    let policy = read_source("../core/src/policy.rs").expect("core/src/policy.rs");
    let (from, to) = function_body(&policy, "code").expect("Refusal::code");
    for arm in policy[from..to].split("Refusal::").skip(1) {
        let variant: String = arm.chars().take_while(|c| c.is_alphanumeric()).collect();
        let code = first_string(arm).expect("a refusal code");
        let status = match variant.as_str() {
            "NotPending" => status_of_variant["WrongState"].clone(),
            "AlreadyDecided" => status_of_variant["AlreadyDecided"].clone(),
            _ => forbidden.clone(),
        };
        found.push((format!("Refusal::{variant}"), status, code));
    }

    assert!(found.len() > 25, "the scan found too little: {found:?}");
    let mut missing = Vec::new();
    for (source, status, code) in found {
        if status == "405" {
            continue; // the router's fallback, described in info.description
        }
        if !documented.get(&status).is_some_and(|c| c.contains(&code)) {
            missing.push(format!("{source}: {status} {code}"));
        }
    }
    assert!(
        missing.is_empty(),
        "not documented:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_request_schema_names_every_key_the_view_emits() {
    let doc = doc();
    // The request view serializes from the request (core::view, shared with webhooks): its
    // keys are read from a real view, with a rule standing, an approval and a rejection.
    let (request, evaluation, _, _) = sample_request();
    let view = views::request(&request, Some(&evaluation));
    let keys = |value: &Value| -> BTreeSet<String> {
        value
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect()
    };
    let objects = [
        ("Request", &view),
        ("RuleStatus", &view["rules"][0]),
        ("Approval", &view["rules"][0]["approvals"][0]),
        ("Decision", &view["decisions"][0]),
        ("Decision", &view["decisions"][1]),
        ("Principal", &view["requester"]),
    ];
    for (name, object) in objects {
        assert_eq!(
            property_names(&doc, name),
            keys(object),
            "{name} properties"
        );
        assert_eq!(
            required_names(&doc, name),
            keys(object),
            "{name}: every key is always present"
        );
    }
    let approver = keys(&view["decisions"][0]["approver"]);
    assert_eq!(
        property_names(&doc, "Approver"),
        approver,
        "Approver properties"
    );
    assert_eq!(required_names(&doc, "Approver"), approver, "Approver");

    let views_rs = read_source("src/api/views.rs").unwrap();
    let (from, to) = function_body(&views_rs, "audit_event").unwrap();
    let objects = json_objects(&views_rs, from, to);
    assert_eq!(objects.len(), 1);
    assert_eq!(property_names(&doc, "AuditEvent"), objects[0]);
    assert_eq!(required_names(&doc, "AuditEvent"), objects[0]);

    let (from, to) = function_body(&views_rs, "gate").unwrap();
    let objects = json_objects(&views_rs, from, to);
    let find = |key: &str| {
        objects
            .iter()
            .find(|k| k.contains(key))
            .unwrap_or_else(|| panic!("no object with {key} in views::gate"))
            .clone()
    };
    let gate = find("can_request");
    assert_eq!(property_names(&doc, "Gate"), gate);
    assert_eq!(required_names(&doc, "Gate"), gate);
    let rule: BTreeSet<String> = schema(&doc, "Gate")["properties"]["rules"]["items"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(rule, find("approvers"), "Gate.rules items");
    // A parameter: the keys always present, and those set per type (`v["pattern"] = ...`).
    let always = find("required");
    let mut param = always.clone();
    let mut at = from;
    while let Some(i) = views_rs[at..to].find("v[\"") {
        param.insert(first_string(&views_rs[at + i..to]).unwrap());
        at += i + 3;
    }
    assert_eq!(property_names(&doc, "Param"), param);
    assert_eq!(required_names(&doc, "Param"), always);

    // Shapes built in the handlers.
    for (file, function, name) in [
        ("src/api/requests.rs", "token", "GrantToken"),
        ("src/api/deliveries.rs", "view", "Delivery"),
        ("src/api/health.rs", "healthz", "Health"),
    ] {
        let src = read_source(file).unwrap_or_else(|| panic!("{file}"));
        let (from, to) = function_body(&src, function).unwrap_or_else(|| panic!("{function}"));
        let objects = json_objects(&src, from, to);
        assert_eq!(objects.len(), 1, "{file} {function}");
        assert_eq!(property_names(&doc, name), objects[0], "{name} properties");
        assert_eq!(required_names(&doc, name), objects[0], "{name} required");
    }
    let health = read_source("src/api/health.rs").unwrap();
    let (from, to) = function_body(&health, "readyz").unwrap();
    let report = json_objects(&health, from, to)
        .into_iter()
        .find(|k| k.contains("issuers"))
        .expect("the readiness report");
    assert_eq!(property_names(&doc, "Readiness"), report);
}

/// A pending request with an approval counted for its first rule and a rejection, its rule
/// standing, the time it uses and its digest.
fn sample_request() -> (
    countersign_core::Request,
    countersign_core::policy::Evaluation,
    countersign_core::Timestamp,
    countersign_core::Digest,
) {
    use countersign_core::policy::evaluate;
    use countersign_core::time::from_millis;
    use countersign_core::{
        Condition, Decision, Digest, Principal, Request, RequestId, Rule, State, Verdict,
    };

    let at = from_millis(1_767_225_600_123).unwrap();
    let mut alice = Principal::human("okta", "alice");
    alice.testing_mut().name = Some("Alice".into());
    alice.testing_mut().email = Some("alice@example.com".into());
    let bob = Principal::human("okta", "bob");
    let carol = Principal::human("google", "carol");
    let digest = Digest::of_json(&json!({"gate": "deploy"}));
    let rule = |name: &str, stage: u32| Rule {
        name: name.into(),
        approvers: Condition::compile("true", &[]).unwrap(),
        min_approvals: 1,
        stage,
        reject_threshold: 1,
    };
    let rules = vec![rule("leads", 1), rule("security", 2)];
    let decision = |who: &Principal, verdict, eligible: &[&str]| Decision {
        approver: who.clone(),
        verdict,
        comment: Some("ok".into()),
        digest: digest.clone(),
        at,
        eligible_rules: eligible.iter().map(|s| s.to_string()).collect(),
    };
    let mut params = BTreeMap::new();
    params.insert("service".to_string(), json!("api"));
    params.insert("replicas".to_string(), json!(3));
    params.insert("dry_run".to_string(), json!(false));
    let request = Request {
        id: RequestId::generate(at),
        gate: "deploy".into(),
        params,
        reason: Some("release 1.2".into()),
        ticket: None,
        requester: alice,
        duration_secs: 5400,
        digest: digest.clone(),
        state: State::Pending,
        approval: None,
        version: 2,
        created_at: at,
        expires_at: at,
        decided_at: None,
        updated_at: at,
        decisions: vec![
            decision(&bob, Verdict::Approve, &["leads"]),
            decision(&carol, Verdict::Reject, &[]),
        ],
    };
    let evaluation = evaluate(&rules, &request.decisions);
    (request, evaluation, at, digest)
}

#[test]
fn real_views_conform_to_the_schemas() {
    use countersign_core::request::ApprovalPath;
    use countersign_core::{Actor, AuditEvent, State};

    let doc = doc();
    let (mut request, evaluation, at, digest) = sample_request();
    let request_schema = json!({"$ref": "#/components/schemas/Request"});

    let pending = views::request(&request, Some(&evaluation));
    assert!(
        !pending["rules"][0]["approvals"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(!pending["waiting_for"].as_array().unwrap().is_empty());
    assert_conforms(&doc, &request_schema, &pending);

    request.state = State::Approved;
    request.approval = Some(ApprovalPath::Quorum);
    request.decided_at = Some(at);
    let approved = views::request(&request, Some(&evaluation));
    assert_conforms(&doc, &request_schema, &approved);
    // The gate is gone: no rule standing.
    assert_conforms(&doc, &request_schema, &views::request(&request, None));

    let page = json!({"items": [pending, approved], "next_cursor": request.id});
    assert_conforms(
        &doc,
        &json!({"$ref": "#/components/schemas/RequestPage"}),
        &page,
    );

    let event = AuditEvent {
        seq: 7,
        at,
        actor: Actor {
            issuer: "okta".into(),
            subject: "bob".into(),
        },
        action: "decision.approve".into(),
        request_id: Some(request.id),
        digest: Some(digest),
        detail: json!({"gate": "deploy"}),
        prev_hash: "0".repeat(64),
        hash: "a".repeat(64),
    };
    let mut system = event.clone();
    system.request_id = None;
    system.digest = None;
    let page = json!({
        "items": [views::audit_event(&event), views::audit_event(&system)],
        "next_after_seq": 7,
    });
    assert_conforms(
        &doc,
        &json!({"$ref": "#/components/schemas/AuditPage"}),
        &page,
    );
}

#[tokio::test]
async fn errors_have_the_documented_shape() {
    use axum::response::IntoResponse;
    use countersign_server::api::ApiError;

    let doc = doc();
    let response =
        ApiError::unauthorized(Some("invalid_token"), "the token expired").into_response();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let shared = resolve(&doc, &doc["paths"]["/gates"]["get"]["responses"]["401"]);
    assert_conforms(
        &doc,
        &shared["content"]["application/json"]["schema"],
        &body,
    );
}
