//! Conditions are CEL expressions, compiled once when the configuration loads and evaluated
//! against plain JSON-shaped variables. A condition that fails to evaluate, or yields anything
//! but a boolean, is false: access fails closed, and the error travels with the result so it
//! can be logged and audited.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use serde_json::Value;

/// A compiled CEL condition and its source text.
#[derive(Clone)]
pub struct Condition {
    source: Arc<str>,
    program: Arc<cel::Program>,
    /// The names the expression reads (comprehension variables included).
    reads: Arc<[String]>,
}

/// Why a condition could not be compiled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConditionError {
    /// The expression is not valid CEL.
    #[error("not a valid CEL expression: {0}")]
    Syntax(String),
    /// The expression names a variable this condition does not receive.
    #[error("unknown variable '{name}' (this condition can use: {allowed})")]
    UnknownVariable {
        /// The name as written.
        name: String,
        /// The variables this kind of condition receives.
        allowed: String,
    },
}

/// The result of one evaluation: the boolean that counts, and the error that made it false,
/// if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// Whether the condition holds. False whenever `error` is set.
    pub value: bool,
    /// Why evaluation failed, when it did.
    pub error: Option<String>,
}

impl Condition {
    /// Compiles `source`, refusing references to variables outside `allowed`.
    pub fn compile(source: &str, allowed: &[&str]) -> Result<Self, ConditionError> {
        let program = cel::Program::compile(source)
            .map_err(|e| ConditionError::Syntax(one_line(&e.to_string())))?;
        let references = program.references();
        let mut unknown: Vec<&str> = references
            .variables()
            .into_iter()
            .filter(|v| !allowed.contains(v))
            .collect();
        unknown.sort_unstable();
        if let Some(name) = unknown.first() {
            // Comprehension variables (`x` in `list.exists(x, ...)`) are references too; only
            // report names that are not bound by a macro in the expression.
            if !is_bound_by_macro(source, name) {
                return Err(ConditionError::UnknownVariable {
                    name: (*name).to_string(),
                    allowed: allowed.join(", "),
                });
            }
        }
        Ok(Self {
            source: source.into(),
            reads: references
                .variables()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            program: Arc::new(program),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with the given variables. Never panics, never errors: see [`Evaluated`].
    ///
    /// Only the variables the expression reads are converted into CEL values; the others are
    /// checked to be convertible, so that, as with [`Bindings`], a variable that could not be
    /// converted makes the condition false whether or not it reads it.
    ///
    /// To evaluate several conditions against the same variables, convert them once with
    /// [`Bindings::new`] and use [`Condition::evaluate_with`].
    pub fn evaluate(&self, variables: &[(&str, &Value)]) -> Evaluated {
        let mut read = Vec::with_capacity(variables.len());
        for &(name, value) in variables {
            if self.reads.iter().any(|r| r == name) {
                read.push((name, value));
            } else if let Err(e) = convertible(value) {
                return Evaluated {
                    value: false,
                    error: Some(format!("variable {name}: {e}")),
                };
            }
        }
        self.evaluate_with(&Bindings::new(&read))
    }

    /// Evaluates against variables already converted. Never panics, never errors: see
    /// [`Evaluated`]; a variable that could not be converted makes every condition false.
    pub fn evaluate_with(&self, bindings: &Bindings<'_>) -> Evaluated {
        let context = match &bindings.context {
            Ok(context) => context,
            Err(e) => {
                return Evaluated {
                    value: false,
                    error: Some(e.clone()),
                };
            }
        };
        match self.program.execute(context) {
            Ok(cel::Value::Bool(b)) => Evaluated {
                value: b,
                error: None,
            },
            Ok(other) => Evaluated {
                value: false,
                error: Some(format!(
                    "the condition returned {:?}, not a boolean",
                    other.type_of()
                )),
            },
            Err(e) => Evaluated {
                value: false,
                error: Some(one_line(&e.to_string())),
            },
        }
    }
}

/// Variables converted once into CEL values, so that several conditions (a gate's rules, say)
/// can be evaluated against them without converting the same JSON again for each one: the
/// conversion, not the evaluation, is most of the cost of a small condition. The CEL values
/// borrow their strings from the JSON.
pub struct Bindings<'v> {
    /// The evaluation context with every variable bound, or why a variable could not be
    /// converted (which makes every condition evaluated with these bindings false).
    context: Result<cel::Context<'v, 'v>, String>,
}

/// The standard environment, built once per process, not once per evaluation: it is most of
/// the cost of evaluating a small condition.
fn stdlib() -> Arc<cel::Env> {
    static STDLIB: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));
    Arc::clone(&STDLIB)
}

impl<'v> Bindings<'v> {
    /// Converts `variables` into CEL values.
    pub fn new(variables: &[(&str, &'v Value)]) -> Self {
        Self::bind(
            cel::Context::with_env(stdlib()),
            variables,
            to_cel::<Borrowed>,
        )
    }

    /// These bindings with `variables` added in an inner scope (shadowing any of the same
    /// name): the ones bound already are not converted again.
    pub fn with<'b>(&'b self, variables: &[(&str, &'b Value)]) -> Bindings<'b> {
        match &self.context {
            Ok(context) => Bindings::bind(context.new_inner_scope(), variables, to_cel::<Borrowed>),
            Err(e) => Bindings {
                context: Err(e.clone()),
            },
        }
    }

    /// These bindings with one variable added in an inner scope, its value built directly
    /// (see [`CelValue`]) rather than converted from JSON; an `Err` makes every condition
    /// evaluated with the new bindings false.
    pub fn with_value<'b>(
        &'b self,
        name: &str,
        value: Result<CelValue<'b>, String>,
    ) -> Bindings<'b> {
        match (&self.context, value) {
            (Ok(context), Ok(value)) => {
                let mut context = context.new_inner_scope();
                context.add_variable_as_val(name, value);
                Bindings {
                    context: Ok(context),
                }
            }
            (Err(e), _) => Bindings {
                context: Err(e.clone()),
            },
            (_, Err(e)) => Bindings {
                context: Err(format!("variable {name}: {e}")),
            },
        }
    }

    fn bind<'j>(
        mut context: cel::Context<'v, 'v>,
        variables: &[(&str, &'j Value)],
        convert: fn(&'j Value) -> Result<Box<dyn Val + 'v>, String>,
    ) -> Self {
        for (name, value) in variables {
            match convert(value) {
                Ok(v) => context.add_variable_as_val(*name, v),
                Err(e) => {
                    return Self {
                        context: Err(format!("variable {name}: {e}")),
                    };
                }
            }
        }
        Self {
            context: Ok(context),
        }
    }
}

impl Bindings<'static> {
    /// Converts `variables` into CEL values that own their strings: bindings that outlive the
    /// JSON they came from, e.g. an approver's, checked against many requests with
    /// [`Bindings::with`].
    pub fn owned(variables: &[(&str, &Value)]) -> Self {
        Self::bind(cel::Context::with_env(stdlib()), variables, to_cel::<Owned>)
    }
}

/// How the strings of a JSON value become CEL strings and map keys.
trait Strings<'j, 'v> {
    fn string(s: &'j str) -> CelString<'v>;
    fn key(s: &'j str) -> CelMapKey<'v>;
}

/// Borrowed from the JSON.
struct Borrowed;

impl<'j> Strings<'j, 'j> for Borrowed {
    fn string(s: &'j str) -> CelString<'j> {
        CelString::from(s)
    }
    fn key(s: &'j str) -> CelMapKey<'j> {
        CelMapKey::from(s)
    }
}

/// Copied.
struct Owned;

impl<'j> Strings<'j, 'static> for Owned {
    fn string(s: &'j str) -> CelString<'static> {
        CelString::from(s.to_owned())
    }
    fn key(s: &'j str) -> CelMapKey<'static> {
        CelMapKey::from(s.to_owned())
    }
}

/// The CEL value of a JSON value, the same as `cel::to_value` makes it (a non-negative integer
/// is a `uint`, a negative one an `int`, any other number a `double`), but built directly:
/// without the intermediate `cel::Value` tree, which the crate deep-copies level by level when
/// binding it, and (with [`Borrowed`]) borrowing the strings instead of copying them.
fn to_cel<'j, 'v, S: Strings<'j, 'v>>(value: &'j Value) -> Result<Box<dyn Val + 'v>, String> {
    Ok(match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(f) = n.as_f64() {
                Box::new(CelDouble::from(f))
            } else {
                return Err(no_cel_number(n));
            }
        }
        Value::String(s) => Box::new(S::string(s)),
        Value::Array(items) => Box::new(CelList::from(
            items
                .iter()
                .map(to_cel::<S>)
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Value::Object(entries) => {
            let mut map = HashMap::with_capacity(entries.len());
            for (key, item) in entries {
                map.insert(S::key(key), to_cel::<S>(item)?);
            }
            Box::new(CelMap::from(map))
        }
    })
}

/// Whether [`to_cel`] converts `value`, without building anything: the first error it would
/// give.
fn convertible(value: &Value) -> Result<(), String> {
    match value {
        Value::Number(n)
            if n.as_u64().is_none() && n.as_i64().is_none() && n.as_f64().is_none() =>
        {
            Err(no_cel_number(n))
        }
        Value::Array(items) => items.iter().try_for_each(convertible),
        Value::Object(entries) => entries.values().try_for_each(convertible),
        _ => Ok(()),
    }
}

fn no_cel_number(n: &serde_json::Number) -> String {
    format!("the number {n} has no CEL value")
}

/// A CEL value built directly from domain types, borrowing their strings: for a value that
/// is bound for every request of a listing, where building its JSON first would copy it once
/// more. Its shape must be the one the JSON form converts to (see the tests of
/// `Request::to_cel`).
pub type CelValue<'v> = Box<dyn Val + 'v>;

/// A CEL string.
pub fn cel_string(s: &str) -> CelValue<'_> {
    Box::new(Borrowed::string(s))
}

/// A CEL integer, typed as its JSON form converts: `uint` when non-negative, else `int`.
pub fn cel_integer(i: i64) -> CelValue<'static> {
    match u64::try_from(i) {
        Ok(u) => Box::new(CelUInt::from(u)),
        Err(_) => Box::new(CelInt::from(i)),
    }
}

/// A CEL `null`.
pub fn cel_null() -> CelValue<'static> {
    Box::new(CelNull)
}

/// A CEL list.
pub fn cel_list(items: Vec<CelValue<'_>>) -> CelValue<'_> {
    Box::new(CelList::from(items))
}

/// A CEL map with string keys.
pub fn cel_map<'v>(entries: impl IntoIterator<Item = (&'v str, CelValue<'v>)>) -> CelValue<'v> {
    Box::new(CelMap::from(
        entries
            .into_iter()
            .map(|(k, v)| (Borrowed::key(k), v))
            .collect::<HashMap<_, _>>(),
    ))
}

/// A map of JSON values (a JSON object's entries, or parameters) as a CEL map, as
/// [`Bindings::new`] converts it.
pub fn cel_json_map<'v>(
    entries: impl IntoIterator<Item = (&'v String, &'v Value)>,
) -> Result<CelValue<'v>, String> {
    let entries = entries
        .into_iter()
        .map(|(k, v)| Ok((k.as_str(), to_cel::<Borrowed>(v)?)))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(cel_map(entries))
}

impl fmt::Debug for Bindings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bindings")
            .field("error", &self.context.as_ref().err())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&&*self.source).finish()
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when `name` is introduced as the iteration variable of a macro such as
/// `exists(name, ...)`, `all(name, ...)`, `map(name, ...)`, `filter(name, ...)`.
fn is_bound_by_macro(source: &str, name: &str) -> bool {
    ["exists", "all", "exists_one", "map", "filter"]
        .iter()
        .any(|m| {
            source.match_indices(&format!("{m}(")).any(|(i, _)| {
                let rest = &source[i + m.len() + 1..];
                rest.trim_start()
                    .strip_prefix(name)
                    .is_some_and(|r| r.trim_start().starts_with(','))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const VARS: &[&str] = &["approver", "request", "now"];

    #[test]
    fn evaluates_membership() {
        let c = Condition::compile(r#""sre" in approver.groups"#, VARS).unwrap();
        let yes = json!({"groups": ["sre", "dev"]});
        let no = json!({"groups": ["dev"]});
        assert!(c.evaluate(&[("approver", &yes)]).value);
        assert!(!c.evaluate(&[("approver", &no)]).value);
    }

    #[test]
    fn errors_fail_closed() {
        let c = Condition::compile("approver.claims.team == 'x'", VARS).unwrap();
        let r = c.evaluate(&[("approver", &json!({"claims": {}}))]);
        assert!(!r.value);
        assert!(r.error.is_some());
        let c = Condition::compile("1 + 1", VARS).unwrap();
        assert!(!c.evaluate(&[]).value);
    }

    #[test]
    fn rejects_unknown_variables_and_bad_syntax() {
        assert!(matches!(
            Condition::compile("aprover.groups == []", VARS),
            Err(ConditionError::UnknownVariable { .. })
        ));
        assert!(matches!(
            Condition::compile("approver.groups ==", VARS),
            Err(ConditionError::Syntax(_))
        ));
        assert!(Condition::compile("approver.groups.exists(g, g == 'sre')", VARS).is_ok());
    }

    #[test]
    fn bindings_serve_several_conditions_alike() {
        let approver = json!({"groups": ["sre"], "claims": {}});
        let now = json!("2027-01-15T08:00:00Z");
        let variables = [("approver", &approver), ("now", &now)];
        let bindings = Bindings::new(&variables);
        for source in [
            r#""sre" in approver.groups"#,
            r#""dba" in approver.groups"#,
            "approver.claims.team == 'x'",
            "size(approver.groups) == 1u",
            "1 + 1",
            "request.gate == 'deploy'",
        ] {
            let c = Condition::compile(source, VARS).unwrap();
            assert_eq!(
                c.evaluate_with(&bindings),
                c.evaluate(&variables),
                "{source}"
            );
        }
        let c = Condition::compile(r#""sre" in approver.groups"#, VARS).unwrap();
        assert!(c.evaluate_with(&bindings).value);
        let unbound = c.evaluate_with(&Bindings::new(&[("now", &now)]));
        assert!(!unbound.value);
        assert!(unbound.error.is_some());
    }

    /// `evaluate` converts only what the expression reads, and answers as binding everything
    /// does: including where a macro's own variable has the name of one passed in.
    #[test]
    fn evaluates_as_if_every_variable_were_bound() {
        let approver = json!({"groups": ["sre"], "claims": {"team": "a", "n": [1, -2, 1.5]}});
        let request = json!({"gate": "deploy", "params": {"n": 3}});
        let now = json!(1_700_000_000);
        let all = [
            ("approver", &approver),
            ("request", &request),
            ("now", &now),
        ];
        for source in [
            r#""sre" in approver.groups"#,
            r#"request.gate == "deploy""#,
            "now > 0u && approver.claims.team == 'a'",
            "approver.groups.exists(request, request == 'sre')",
            "approver.groups.exists(now, now == 'dev')",
            "true",
            "request.nope",
            "1",
        ] {
            let c = Condition::compile(source, VARS).unwrap();
            assert_eq!(
                c.evaluate(&all),
                c.evaluate_with(&Bindings::new(&all)),
                "{source}"
            );
        }
    }

    #[test]
    fn converts_numbers_as_cel_to_value_does() {
        for v in [
            json!(0),
            json!(900),
            json!(-3),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
        ] {
            let direct = cel::Value::try_from(to_cel::<Borrowed>(&v).unwrap().as_ref()).unwrap();
            assert!(same(&direct, &cel::to_value(&v).unwrap()), "{v}");
            let owned = cel::Value::try_from(to_cel::<Owned>(&v).unwrap().as_ref()).unwrap();
            assert!(same(&owned, &direct), "{v}");
        }
        let c = Condition::compile("request.duration_seconds == 900u", &["request"]).unwrap();
        assert!(
            c.evaluate(&[("request", &json!({"duration_seconds": 900}))])
                .value
        );
    }

    #[test]
    fn inner_scopes_add_and_shadow_variables() {
        let approver = json!({"groups": ["sre"], "subject": "bob"});
        let outer = Bindings::owned(&[("approver", &approver), ("x", &json!(1))]);
        let c = Condition::compile(
            "'sre' in approver.groups && request.gate == 'deploy' && x == 2",
            &["approver", "request", "x"],
        )
        .unwrap();
        let request = json!({"gate": "deploy"});
        let two = json!(2);
        assert!(
            c.evaluate_with(&outer.with(&[("request", &request), ("x", &two)]))
                .value
        );
        let other = json!({"gate": "db"});
        assert!(
            !c.evaluate_with(&outer.with(&[("request", &other), ("x", &two)]))
                .value
        );
        // The outer binding is untouched by the inner ones.
        let r = c.evaluate_with(&outer.with(&[("request", &request)]));
        assert!(!r.value && r.error.is_none());
        // Bindings that failed to convert stay failed in an inner scope: every condition false.
        let failed = Bindings {
            context: Err("variable approver: no CEL value".into()),
        };
        let r = c.evaluate_with(&failed.with(&[("request", &request), ("x", &two)]));
        assert!(!r.value);
        assert!(r.error.is_some_and(|e| e.contains("approver")));
    }

    /// Equality without CEL's numeric leniency (`1 == 1u` holds in CEL): the same variants
    /// all the way down.
    fn same(a: &cel::Value, b: &cel::Value) -> bool {
        use cel::Value as V;
        match (a, b) {
            (V::Null, V::Null) => true,
            (V::Bool(x), V::Bool(y)) => x == y,
            (V::Int(x), V::Int(y)) => x == y,
            (V::UInt(x), V::UInt(y)) => x == y,
            (V::Float(x), V::Float(y)) => x.to_bits() == y.to_bits(),
            (V::String(x), V::String(y)) => x == y,
            (V::List(x), V::List(y)) => {
                x.len() == y.len() && x.iter().zip(y.iter()).all(|(x, y)| same(x, y))
            }
            (V::Map(x), V::Map(y)) => {
                x.map.len() == y.map.len()
                    && x.map
                        .iter()
                        .all(|(k, v)| y.map.get(k).is_some_and(|w| same(v, w)))
            }
            _ => false,
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| {
                serde_json::Number::from_f64(f).map(Value::Number)
            }),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The direct conversion builds the same CEL value as the crate's serde conversion.
        #[test]
        fn direct_conversion_matches_cel_to_value(v in json_value()) {
            let direct = cel::Value::try_from(to_cel::<Borrowed>(&v).unwrap().as_ref()).unwrap();
            let via_serde = cel::to_value(&v).unwrap();
            prop_assert!(same(&direct, &via_serde), "{:?} != {:?}", direct, via_serde);
            let owned = cel::Value::try_from(to_cel::<Owned>(&v).unwrap().as_ref()).unwrap();
            prop_assert!(same(&owned, &via_serde), "{:?} != {:?}", owned, via_serde);
        }
    }
}
