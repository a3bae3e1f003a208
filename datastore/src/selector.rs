//! Calico's label selector language: parser and evaluator.
//!
//! Grammar (as in `libcalico-go/lib/selector`): `all()`, `has(k)`, `k == 'v'`, `k != 'v'`,
//! `k in {'a', 'b'}`, `k not in {...}`, `!expr`, `a && b`, `a || b`, parentheses; string
//! literals in single or double quotes; label keys made of letters, digits and `/ . - _`.
//! `&&` binds tighter than `||`; the empty selector matches everything.
//!
//! ```
//! use std::collections::BTreeMap;
//! use datastore::Selector;
//! let sel = Selector::parse("rack == 'r1' && !has(route-reflector)").unwrap();
//! let labels = BTreeMap::from([("rack".to_string(), "r1".to_string())]);
//! assert!(sel.matches(&labels));
//! ```

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// A selector that failed to parse: what went wrong and the character offset.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid selector {input:?}: {message} at position {position}")]
pub struct SelectorError {
    /// The selector text as given.
    pub input: String,
    /// What the parser expected or found.
    pub message: String,
    /// Character offset (0-based) where the problem was found.
    pub position: usize,
}

/// A parsed selector expression, evaluated against a label map with [`Selector::matches`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    source: String,
    expr: Expr,
}

/// The selector syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `all()` (and the empty selector).
    All,
    /// `has(key)`.
    Has(String),
    /// `key == 'value'`.
    Eq(String, String),
    /// `key != 'value'` (true when the label is absent).
    Ne(String, String),
    /// `key in {'a', 'b'}`.
    In(String, Vec<String>),
    /// `key not in {'a', 'b'}` (true when the label is absent).
    NotIn(String, Vec<String>),
    /// `!expr`.
    Not(Box<Expr>),
    /// `a && b && ...` (a chain is one node: its length adds no depth).
    And(Vec<Expr>),
    /// `a || b || ...`.
    Or(Vec<Expr>),
}

/// Deepest nesting of parentheses and negations a selector may have. Parsing, evaluating
/// and dropping recurse once per level: without a bound, thousands of `(` from a user or
/// the datastore would overflow the stack of calicoctl, calico-node or calico-ipam.
pub const MAX_NESTING: usize = 64;

// ===== impl Selector =====

impl Selector {
    /// Parses a selector; `""` (or only spaces) is equivalent to `all()`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let expr = Parser::new(input).parse()?;
        Ok(Selector {
            source: input.to_string(),
            expr,
        })
    }

    /// The selector that matches everything.
    pub fn all() -> Selector {
        Selector {
            source: "all()".to_string(),
            expr: Expr::All,
        }
    }

    /// True if `labels` satisfy the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.expr.eval(labels)
    }

    /// The syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The text the selector was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        Selector::parse(s)
    }
}

// ===== impl Expr =====

impl Expr {
    /// Evaluates the expression against a label map.
    pub fn eval(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Expr::All => true,
            Expr::Has(k) => labels.contains_key(k),
            Expr::Eq(k, v) => labels.get(k) == Some(v),
            Expr::Ne(k, v) => labels.get(k) != Some(v),
            Expr::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Expr::NotIn(k, vs) => !labels.get(k).is_some_and(|l| vs.contains(l)),
            Expr::Not(e) => !e.eval(labels),
            Expr::And(all) => all.iter().all(|e| e.eval(labels)),
            Expr::Or(any) => any.iter().any(|e| e.eval(labels)),
        }
    }
}

// ===== parser =====

struct Parser<'a> {
    input: &'a str,
    chars: Vec<char>,
    pos: usize,
    /// Open parentheses and negations around the current position.
    depth: usize,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_')
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Parser<'a> {
        Parser {
            input,
            chars: input.chars().collect(),
            pos: 0,
            depth: 0,
        }
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, SelectorError> {
        Err(SelectorError {
            input: self.input.to_string(),
            message: message.into(),
            position: self.pos,
        })
    }

    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.get(self.pos).copied()
    }

    /// Consumes `token` if the input continues with it (after spaces).
    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        let n = token.chars().count();
        let matches = self.pos + n <= self.chars.len()
            && self.chars[self.pos..self.pos + n]
                .iter()
                .copied()
                .eq(token.chars());
        if matches {
            self.pos += n;
        }
        matches
    }

    fn expect(&mut self, token: &str) -> Result<(), SelectorError> {
        if self.eat(token) {
            Ok(())
        } else {
            let found = match self.peek() {
                Some(c) => format!("'{c}'"),
                None => "end of input".to_string(),
            };
            self.err(format!("expected '{token}', found {found}"))
        }
    }

    fn parse(mut self) -> Result<Expr, SelectorError> {
        if self.peek().is_none() {
            return Ok(Expr::All);
        }
        let expr = self.parse_or()?;
        if let Some(c) = self.peek() {
            return self.err(format!("unexpected '{c}'"));
        }
        Ok(expr)
    }

    fn parse_or(&mut self) -> Result<Expr, SelectorError> {
        let mut any = vec![self.parse_and()?];
        while self.eat("||") {
            any.push(self.parse_and()?);
        }
        Ok(match any.len() {
            1 => any.remove(0),
            _ => Expr::Or(any),
        })
    }

    fn parse_and(&mut self) -> Result<Expr, SelectorError> {
        let mut all = vec![self.parse_unary()?];
        while self.eat("&&") {
            all.push(self.parse_unary()?);
        }
        Ok(match all.len() {
            1 => all.remove(0),
            _ => Expr::And(all),
        })
    }

    /// One nesting level deeper (a `(` or a `!`), refused beyond [`MAX_NESTING`].
    fn nest(&mut self) -> Result<(), SelectorError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return self.err(format!(
                "nested deeper than {MAX_NESTING} levels of parentheses and negations"
            ));
        }
        Ok(())
    }

    fn parse_unary(&mut self) -> Result<Expr, SelectorError> {
        match self.peek() {
            None => self.err("expected an expression, found end of input"),
            Some('!') if !self.at("!=") => {
                self.nest()?;
                self.pos += 1;
                let e = Expr::Not(Box::new(self.parse_unary()?));
                self.depth -= 1;
                Ok(e)
            }
            Some('(') => {
                self.nest()?;
                self.pos += 1;
                let e = self.parse_or()?;
                self.expect(")")?;
                self.depth -= 1;
                Ok(e)
            }
            Some(_) => self.parse_term(),
        }
    }

    fn at(&self, token: &str) -> bool {
        let n = token.chars().count();
        self.pos + n <= self.chars.len()
            && self.chars[self.pos..self.pos + n]
                .iter()
                .copied()
                .eq(token.chars())
    }

    fn parse_key(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let start = self.pos;
        while self.chars.get(self.pos).copied().is_some_and(is_key_char) {
            self.pos += 1;
        }
        if start == self.pos {
            return match self.chars.get(self.pos) {
                Some(c) => self.err(format!("expected a label key, found '{c}'")),
                None => self.err("expected a label key, found end of input"),
            };
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn parse_string(&mut self) -> Result<String, SelectorError> {
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            Some(c) => return self.err(format!("expected a quoted string, found '{c}'")),
            None => return self.err("expected a quoted string, found end of input"),
        };
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.chars.get(self.pos) {
                Some(&c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
                None => {
                    self.pos = start;
                    return self.err("unterminated string");
                }
            }
        }
    }

    fn parse_set(&mut self) -> Result<Vec<String>, SelectorError> {
        self.expect("{")?;
        let mut values = Vec::new();
        if self.eat("}") {
            return Ok(values);
        }
        loop {
            values.push(self.parse_string()?);
            if self.eat("}") {
                return Ok(values);
            }
            self.expect(",")?;
        }
    }

    fn parse_term(&mut self) -> Result<Expr, SelectorError> {
        let key_pos = self.pos;
        let key = self.parse_key()?;
        if key == "all" && self.eat("(") {
            self.expect(")")?;
            return Ok(Expr::All);
        }
        if key == "has" && self.eat("(") {
            let k = self.parse_key()?;
            self.expect(")")?;
            return Ok(Expr::Has(k));
        }
        if self.eat("==") {
            return Ok(Expr::Eq(key, self.parse_string()?));
        }
        if self.eat("!=") {
            return Ok(Expr::Ne(key, self.parse_string()?));
        }
        self.skip_ws();
        let save = self.pos;
        if let Ok(word) = self.parse_key() {
            if word == "in" {
                return Ok(Expr::In(key, self.parse_set()?));
            }
            if word == "not" {
                self.skip_ws();
                if let Ok(w2) = self.parse_key()
                    && w2 == "in"
                {
                    return Ok(Expr::NotIn(key, self.parse_set()?));
                }
            }
        }
        self.pos = save;
        if self.pos >= self.chars.len() {
            self.pos = key_pos;
            return self.err(format!(
                "expected an operator (==, !=, in, not in) after '{key}', found end of input"
            ));
        }
        self.err(format!(
            "expected an operator (==, !=, in, not in) after '{key}'"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(sel: &str, pairs: &[(&str, &str)]) -> bool {
        Selector::parse(sel)
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(&labels(pairs))
    }

    #[test]
    fn all_and_empty_match_everything() {
        assert!(m("all()", &[]));
        assert!(m("", &[("a", "b")]));
        assert!(m("  all( ) ", &[]));
        assert!(!m("!all()", &[]));
    }

    #[test]
    fn has_and_not_has() {
        assert!(m("has(route-reflector)", &[("route-reflector", "")]));
        assert!(!m("has(route-reflector)", &[]));
        assert!(m("!has(calico-route-reflector)", &[]));
        assert!(!m("! has(x)", &[("x", "1")]));
    }

    #[test]
    fn equality_and_inequality_with_both_quotes() {
        assert!(m("rack == 'rack-1'", &[("rack", "rack-1")]));
        assert!(m("rack == \"rack-1\"", &[("rack", "rack-1")]));
        assert!(!m("rack == 'rack-1'", &[("rack", "rack-2")]));
        assert!(m("rack != 'rack-1'", &[("rack", "rack-2")]));
        assert!(m("rack != 'rack-1'", &[]));
        assert!(m("route-reflector=='true'", &[("route-reflector", "true")]));
    }

    #[test]
    fn set_membership() {
        assert!(m("zone in {'a', 'b'}", &[("zone", "b")]));
        assert!(!m("zone in {'a','b'}", &[("zone", "c")]));
        assert!(!m("zone in {'a'}", &[]));
        assert!(m("zone not in {'a'}", &[]));
        assert!(m("zone not in {\"a\"}", &[("zone", "z")]));
        assert!(!m("zone not in {'a'}", &[("zone", "a")]));
        assert!(!m("zone in {}", &[("zone", "a")]));
    }

    #[test]
    fn keys_with_slash_dot_dash_underscore() {
        assert!(m(
            "kubernetes.io/os == 'linux' && my_key-1 == 'x'",
            &[("kubernetes.io/os", "linux"), ("my_key-1", "x")]
        ));
    }

    #[test]
    fn precedence_and_parentheses() {
        // && binds tighter than ||.
        assert!(m("a == '1' || b == '1' && c == '1'", &[("a", "1")]));
        assert!(!m("(a == '1' || b == '1') && c == '1'", &[("a", "1")]));
        assert!(m("!(a == '1') || has(b)", &[("b", "")]));
        assert!(m("((has(a)))", &[("a", "")]));
    }

    #[test]
    fn deep_nesting_is_a_clear_error_not_a_stack_overflow() {
        let deep = format!("{}has(a){}", "(".repeat(100_000), ")".repeat(100_000));
        let err = Selector::parse(&deep).expect_err("too deep");
        assert!(
            err.message.contains("nested deeper than 64 levels"),
            "{err}"
        );
        assert_eq!(err.position, MAX_NESTING);
        let nots = format!("{}has(a)", "!".repeat(100_000));
        assert!(Selector::parse(&nots).is_err());
        // As deep as allowed still parses and evaluates.
        let ok = format!(
            "{}has(a){}",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert!(Selector::parse(&ok).is_ok_and(|s| s.matches(&labels(&[("a", "1")]))));
    }

    #[test]
    fn a_long_chain_parses_evaluates_and_drops_without_recursing_per_term() {
        let terms: Vec<String> = (0..200_000).map(|i| format!("k{i} == 'v'")).collect();
        let sel = Selector::parse(&terms.join(" && ")).expect("a flat chain");
        assert!(!sel.matches(&labels(&[("k0", "v")])));
        let any = Selector::parse(&terms.join(" || ")).expect("a flat chain");
        assert!(any.matches(&labels(&[("k199999", "v")])));
    }

    #[test]
    fn errors_name_the_position() {
        let e = Selector::parse("rack == rack-1").unwrap_err();
        assert_eq!(e.position, 8);
        assert!(e.message.contains("quoted string"), "{e}");
        let e = Selector::parse("has(a").unwrap_err();
        assert!(e.message.contains("expected ')'"), "{e}");
        let e = Selector::parse("a == 'x' &&").unwrap_err();
        assert!(e.message.contains("end of input"), "{e}");
        let e = Selector::parse("a == 'x").unwrap_err();
        assert_eq!(e.message, "unterminated string");
        assert_eq!(e.position, 5);
        let e = Selector::parse("rack").unwrap_err();
        assert!(e.message.contains("operator"), "{e}");
        let e = Selector::parse("a == 'b' c").unwrap_err();
        assert!(e.message.contains("unexpected 'c'"), "{e}");
        let e = Selector::parse("a in 'b'").unwrap_err();
        assert!(e.message.contains("expected '{'"), "{e}");
        assert!(Selector::parse("==").is_err());
        assert!(Selector::parse("a = 'b'").is_err());
        assert!(Selector::parse("()").is_err());
    }

    #[test]
    fn display_keeps_source() {
        let s = Selector::parse("foo == 'bar'").unwrap();
        assert_eq!(s.to_string(), "foo == 'bar'");
    }
}
