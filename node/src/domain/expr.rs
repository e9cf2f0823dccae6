//! CEL in definitions: validation rules and trigger conditions, compiled once at load time.
//!
//! BVER has one expression language, CEL (the `cel` crate). Definitions use it in two places:
//!
//! - **rules** (`[refs.R.rules.NAME]`, on kinds and figments too): a boolean expression over
//!   the reference value that must hold for every value written; the broker checks them after
//!   the value passes its JSON Schema;
//! - **trigger conditions** (`when = "..."` on a named trigger): a boolean expression over a
//!   mutation's event, deciding whether the trigger fires.
//!
//! Each expression is parsed and checked once, when the definition is loaded; a fault is a
//! load error with its file, line and column. Evaluation reuses the compiled program.
//!
//! Values are JSON, and JSON has one number type: every JSON number is a CEL `double`
//! (`rating_mva * 1.2` works whether the value holds `240` or `240.5`). Arithmetic that
//! mixes a field with an integer literal (`rating_mva * 2`) would fail on every value, so it
//! is refused at load with a hint to write `2.0`. `size()` and integer literals compare
//! with doubles as CEL defines (`size(transformers) >= 1`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::objects::{Key, Map as CelMap};
use cel::{Context, Env, Program};
use serde_json::Value;

/// The name a rule uses for the whole value.
pub const SELF: &str = "self";

/// The variables of a trigger condition.
pub const CONDITION_VARIABLES: [&str; 9] = [
    "event",
    "repo",
    "id",
    "kind",
    "old_kind",
    "old",
    "new",
    "diff",
    "principal",
];

/// The shared CEL environment: the standard library and macros.
pub(crate) fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

/// A CEL expression that failed to compile: where (1-based line and column inside the
/// expression) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CelFault {
    pub(crate) line: u32,
    pub(crate) column: u32,
    pub(crate) message: String,
}

/// A compiled boolean expression and what it refers to.
#[derive(Debug, Clone)]
pub struct Expression {
    /// The source as written.
    pub source: String,
    program: Arc<Program>,
    /// Free variables (not bound by a macro such as `all(x, ...)`), sorted.
    free: Vec<String>,
    /// Top-level fields of the value it reads, through `self.F` or a bare `F`, sorted.
    fields: Vec<String>,
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Expression {}

impl Expression {
    /// Parse and check `source`. `variables`, when given, is the closed set of names the
    /// expression may use (trigger conditions); rules may name any top-level field.
    pub(crate) fn compile(source: &str, variables: Option<&[&str]>) -> Result<Self, CelFault> {
        let program = env().compile(source).map_err(|errs| {
            let first = errs.errors.first();
            CelFault {
                line: first.map_or(1, |e| u32::try_from(e.pos.0.max(1)).unwrap_or(1)),
                column: first.map_or(1, |e| u32::try_from(e.pos.1.max(1)).unwrap_or(1)),
                message: first.map_or_else(|| errs.to_string(), |e| e.msg.clone()),
            }
        })?;
        let mut walk = Walk::default();
        walk.expr(program.expression());
        let at = |id: u64| {
            program
                .source_info()
                .offset_for(id)
                .map_or((1, 1), |(start, _)| line_column(source, start as usize))
        };
        if let Some((id, literal)) = walk.int_arithmetic {
            let (line, column) = at(id);
            return Err(CelFault {
                line,
                column,
                message: format!(
                    "integer literal `{literal}` in arithmetic with a value field: JSON numbers \
                     are CEL doubles, so this fails on every value; write `{literal}.0`"
                ),
            });
        }
        if let Some((id, name)) = walk.unknown_function.clone() {
            let (line, column) = at(id);
            return Err(CelFault {
                line,
                column,
                message: format!("unknown function `{name}`"),
            });
        }
        let free: BTreeSet<String> = walk
            .idents
            .iter()
            .filter(|i| !walk.bound.contains(*i))
            .cloned()
            .collect();
        if let Some(allowed) = variables
            && let Some(bad) = free.iter().find(|v| !allowed.contains(&v.as_str()))
        {
            let (line, column) = walk.ident_at.get(bad).map_or((1, 1), |&id| at(id));
            return Err(CelFault {
                line,
                column,
                message: format!(
                    "unknown variable `{bad}`; a trigger condition can use {}",
                    allowed.join(", ")
                ),
            });
        }
        let mut fields: BTreeSet<String> = walk.self_fields;
        fields.extend(free.iter().filter(|f| f.as_str() != SELF).cloned());
        Ok(Self {
            source: source.to_owned(),
            program: Arc::new(program),
            free: free.into_iter().collect(),
            fields: fields.into_iter().collect(),
        })
    }

    /// The top-level fields of the value the expression reads, sorted.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Every variable it reads that no macro binds, sorted.
    pub fn variables(&self) -> &[String] {
        &self.free
    }

    /// Run against `context`: `Ok(true)`, `Ok(false)`, or why it could not be decided.
    fn run(&self, context: &Context<'_, '_>) -> Result<bool, String> {
        match self.program.execute(context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("returned {other:?}, not a boolean")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The 1-based line and character column of byte `offset` in `source`.
fn line_column(source: &str, offset: usize) -> (u32, u32) {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

/// The result names and positions found walking an expression.
#[derive(Default)]
struct Walk {
    idents: HashSet<String>,
    ident_at: HashMap<String, u64>,
    bound: HashSet<String>,
    self_fields: BTreeSet<String>,
    int_arithmetic: Option<(u64, i64)>,
    unknown_function: Option<(u64, String)>,
}

/// Functions of the CEL standard library as the `cel` crate implements it (operators are
/// `_op_` and internal helpers start with `@`).
const FUNCTIONS: [&str; 28] = [
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "string",
    "int",
    "uint",
    "double",
    "bool",
    "bytes",
    "type",
    "dyn",
    "max",
    "min",
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "in",
    "duration",
    "timestamp",
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
    "hasValue",
];

impl Walk {
    fn expr(&mut self, e: &IdedExpr) {
        match &e.expr {
            Expr::Ident(name) => {
                self.idents.insert(name.clone());
                self.ident_at.entry(name.clone()).or_insert(e.id);
            }
            Expr::Select(s) => {
                if let Expr::Ident(root) = &s.operand.expr
                    && root == SELF
                {
                    self.self_fields.insert(s.field.clone());
                }
                self.expr(&s.operand);
            }
            Expr::Call(c) => {
                let name = c.func_name.as_str();
                let internal =
                    name.starts_with('_') || name.starts_with('@') || name.starts_with('!');
                if !(internal || FUNCTIONS.contains(&name)) && self.unknown_function.is_none() {
                    self.unknown_function = Some((e.id, name.to_owned()));
                }
                if matches!(name, "_+_" | "_-_" | "_*_" | "_/_" | "_%_")
                    && c.args.len() == 2
                    && self.int_arithmetic.is_none()
                {
                    let field = |x: &IdedExpr| matches!(x.expr, Expr::Ident(_) | Expr::Select(_));
                    let int = |x: &IdedExpr| match &x.expr {
                        Expr::Literal(LiteralValue::Int(i)) => Some(**i),
                        _ => None,
                    };
                    let (a, b) = (&c.args[0], &c.args[1]);
                    if let Some(i) = int(a).filter(|_| field(b)).or(int(b).filter(|_| field(a))) {
                        self.int_arithmetic = Some((e.id, i));
                    }
                }
                if let Some(t) = &c.target {
                    self.expr(t);
                }
                for a in &c.args {
                    self.expr(a);
                }
            }
            Expr::Comprehension(c) => {
                self.bound.insert(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    self.bound.insert(v.clone());
                }
                self.bound.insert(c.accu_var.clone());
                for x in [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ] {
                    self.expr(x);
                }
            }
            Expr::List(l) => {
                for x in &l.elements {
                    self.expr(x);
                }
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    self.entry(&entry.expr);
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    self.entry(&entry.expr);
                }
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn entry(&mut self, e: &EntryExpr) {
        match e {
            EntryExpr::StructField(f) => self.expr(&f.value),
            EntryExpr::MapEntry(m) => {
                self.expr(&m.key);
                self.expr(&m.value);
            }
        }
    }
}

/// A JSON value as a CEL value: numbers are doubles, objects are maps with string keys.
pub(crate) fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let map: HashMap<Key, cel::Value> = o
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            cel::Value::Map(CelMap { map: Arc::new(map) })
        }
    }
}

/// A validation rule on a reference type, a kind or a figment.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its name (`load_within_rating`), unique among the rules that apply to a value.
    pub name: String,
    /// What a failure means, for people.
    pub message: String,
    /// Where it is declared: `refs.site`, ``kind `power.substation` of refs.site``,
    /// ``figment `geo` ``.
    pub source: String,
    /// The fields a failure points at, as JSON pointers (`/max_load_mva`): those given in
    /// `fields`, or else the top-level fields the expression reads.
    pub fields: Vec<String>,
    /// The compiled expression.
    pub expr: Expression,
}

/// One rule a value breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFailure {
    /// The rule's name.
    pub rule: String,
    /// Its message.
    pub message: String,
    /// The fields involved, as JSON pointers.
    pub fields: Vec<String>,
    /// Where the rule is declared.
    pub source: String,
    /// The expression.
    pub expr: String,
    /// Set when the expression could not be evaluated (a type error, a missing key inside a
    /// map): the value breaks the rule, and this says why.
    pub error: Option<String>,
}

impl RuleFailure {
    /// `{"rule", "message", "fields", "source", "expr"[, "error"]}`.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "rule": self.rule,
            "message": self.message,
            "fields": self.fields,
            "source": self.source,
            "expr": self.expr,
        });
        if let (Some(e), Some(o)) = (&self.error, v.as_object_mut()) {
            o.insert("error".into(), Value::String(e.clone()));
        }
        v
    }
}

/// Check `value` against `rules`. A rule applies only when every top-level field it names
/// bare (`rating_mva`, not `self.rating_mva`) is present; it passes when it evaluates to
/// true. Returns the rules broken, in order.
pub fn check_rules(rules: &[Arc<Rule>], value: &Value) -> Vec<RuleFailure> {
    if rules.is_empty() {
        return Vec::new();
    }
    let Some(obj) = value.as_object() else {
        return Vec::new();
    };
    let cel_value = to_cel(value);
    let mut context = Context::with_env(env().clone());
    context.add_variable_from_value(SELF, cel_value.clone());
    if let cel::Value::Map(m) = &cel_value {
        for (k, v) in m.map.iter() {
            if let Key::String(name) = k
                && name.as_str() != SELF
            {
                context.add_variable_from_value(name.as_str(), v.clone());
            }
        }
    }
    let mut failures = Vec::new();
    for rule in rules {
        if rule
            .expr
            .free
            .iter()
            .any(|v| v != SELF && !obj.contains_key(v))
        {
            continue;
        }
        let error = match rule.expr.run(&context) {
            Ok(true) => continue,
            Ok(false) => None,
            Err(e) => Some(e),
        };
        failures.push(RuleFailure {
            rule: rule.name.clone(),
            message: rule.message.clone(),
            fields: rule.fields.clone(),
            source: rule.source.clone(),
            expr: rule.expr.source.clone(),
            error,
        });
    }
    failures
}

/// What a trigger condition sees of one mutation.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// `created`, `updated`, `deleted`, `kind_changed` or `restored`.
    pub event: &'a str,
    /// The repo.
    pub repo: &'a str,
    /// The reference id.
    pub id: &'a str,
    /// The kind after the change.
    pub kind: Option<&'a str>,
    /// The kind before the change.
    pub old_kind: Option<&'a str>,
    /// The value before (`null` for a create).
    pub old: &'a Value,
    /// The value after (`null` for a delete).
    pub new: &'a Value,
    /// The RFC 6902 patch from `old` to `new`.
    pub diff: &'a Value,
    /// The subject of the principal that made the change.
    pub principal: &'a str,
}

impl EventView<'_> {
    fn context(&self) -> Context<'static, 'static> {
        let mut c = Context::with_env(env().clone());
        let s = |x: &str| cel::Value::String(Arc::new(x.to_owned()));
        let opt = |x: Option<&str>| x.map_or(cel::Value::Null, s);
        c.add_variable_from_value("event", s(self.event));
        c.add_variable_from_value("repo", s(self.repo));
        c.add_variable_from_value("id", s(self.id));
        c.add_variable_from_value("kind", opt(self.kind));
        c.add_variable_from_value("old_kind", opt(self.old_kind));
        c.add_variable_from_value("old", to_cel(self.old));
        c.add_variable_from_value("new", to_cel(self.new));
        c.add_variable_from_value("diff", to_cel(self.diff));
        c.add_variable_from_value("principal", s(self.principal));
        c
    }
}

/// Evaluate trigger conditions against one event; `Ok(true)` for each that holds. An
/// expression that cannot be evaluated (it reads a field the value does not have) does not
/// fire; the reason is returned so that it can be logged.
pub fn check_conditions<'a>(
    conditions: impl IntoIterator<Item = &'a Expression>,
    view: &EventView<'_>,
) -> Vec<Result<bool, String>> {
    let context = view.context();
    conditions.into_iter().map(|c| c.run(&context)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(expr: &str) -> Arc<Rule> {
        Arc::new(Rule {
            name: "r".into(),
            message: "m".into(),
            source: "refs.x".into(),
            fields: vec![],
            expr: Expression::compile(expr, None).expect("compiles"),
        })
    }

    #[test]
    fn numbers_are_doubles_and_missing_fields_skip_the_rule() {
        let r = rule("max_load_mva <= rating_mva * 1.2");
        assert_eq!(r.expr.fields(), ["max_load_mva", "rating_mva"]);
        let ok = json!({"rating_mva": 240, "max_load_mva": 288});
        assert!(check_rules(std::slice::from_ref(&r), &ok).is_empty());
        let bad = json!({"rating_mva": 240, "max_load_mva": 289.5});
        assert_eq!(check_rules(std::slice::from_ref(&r), &bad).len(), 1);
        assert!(check_rules(&[r], &json!({"rating_mva": 240})).is_empty());
        let r = rule(
            "size(self.transformers) >= 1 && self.transformers.all(t, t.rating_mva <= self.rating_mva)",
        );
        assert_eq!(r.expr.fields(), ["rating_mva", "transformers"]);
        assert_eq!(r.expr.free, ["self"]);
        let v = json!({"rating_mva": 100, "transformers": [{"rating_mva": 150}]});
        assert_eq!(check_rules(std::slice::from_ref(&r), &v).len(), 1);
        let e = check_rules(&[r], &json!({"rating_mva": 1}));
        assert!(e[0].error.is_some(), "{e:?}");
    }

    #[test]
    fn faults_have_positions() {
        let f = Expression::compile("rating_mva >\n  ", None).expect_err("syntax");
        assert_eq!(f.line, 2);
        let f = Expression::compile("a * 2 > 1", None).expect_err("int literal");
        assert!(f.message.contains("2.0"), "{f:?}");
        assert_eq!((f.line, f.column), (1, 3));
        let f = Expression::compile("lenght(a) > 1", None).expect_err("function");
        assert!(f.message.contains("lenght"), "{f:?}");
        let f = Expression::compile("nwe.x > 1", Some(&CONDITION_VARIABLES)).expect_err("var");
        assert!(f.message.contains("nwe"), "{f:?}");
        assert!(Expression::compile("size(a) + 1 > 2", None).is_ok());
    }

    #[test]
    fn conditions_see_the_event() {
        let c = Expression::compile(
            "event == 'updated' && old.voltage_kv != new.voltage_kv && new.voltage_kv > 110.0",
            Some(&CONDITION_VARIABLES),
        )
        .expect("compiles");
        let old = json!({"voltage_kv": 33});
        let new = json!({"voltage_kv": 132});
        let view = EventView {
            event: "updated",
            repo: "site",
            id: "a",
            kind: None,
            old_kind: None,
            old: &old,
            new: &new,
            diff: &json!([]),
            principal: "alice",
        };
        assert_eq!(check_conditions([&c], &view), [Ok(true)]);
        let view = EventView { new: &old, ..view };
        assert_eq!(check_conditions([&c], &view), [Ok(false)]);
    }
}
