//! A small evaluator for the node selectors IP pools carry (`all()`, `!all()`,
//! `k == 'v'`, `k != 'v'`, `has(k)`, `!has(k)`, `k in {'a','b'}`, `k not in {...}`,
//! joined with `&&` / `||` and parentheses). Used until the datastore's full Calico
//! selector parser is wired in; anything it cannot parse is an error, never a match.

use std::collections::BTreeMap;

/// A selector that failed to parse, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError(pub String);

/// True when `labels` match `selector`. An empty selector matches everything (as Calico's
/// default `all()`).
pub fn matches(selector: &str, labels: &BTreeMap<String, String>) -> Result<bool, SelectorError> {
    let tokens = tokenize(selector)?;
    if tokens.is_empty() {
        return Ok(true);
    }
    let mut parser = Parser {
        tokens: &tokens,
        pos: 0,
        labels,
    };
    let value = parser.or()?;
    if parser.pos != tokens.len() {
        return Err(SelectorError(format!(
            "unexpected {:?} in selector {selector:?}",
            tokens[parser.pos]
        )));
    }
    Ok(value)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Eq,
    Ne,
    Not,
    And,
    Or,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, SelectorError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => (out.push(Tok::LParen), i += 1).1,
            ')' => (out.push(Tok::RParen), i += 1).1,
            '{' => (out.push(Tok::LBrace), i += 1).1,
            '}' => (out.push(Tok::RBrace), i += 1).1,
            ',' => (out.push(Tok::Comma), i += 1).1,
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .ok_or_else(|| SelectorError(format!("unterminated string in {s:?}")))?;
                out.push(Tok::Str(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            _ if two == "==" => (out.push(Tok::Eq), i += 2).1,
            _ if two == "!=" => (out.push(Tok::Ne), i += 2).1,
            _ if two == "&&" => (out.push(Tok::And), i += 2).1,
            _ if two == "||" => (out.push(Tok::Or), i += 2).1,
            '!' => (out.push(Tok::Not), i += 1).1,
            _ if c.is_alphanumeric() || "_-./".contains(c) => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_-./".contains(chars[i])) {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            _ => return Err(SelectorError(format!("unexpected {c:?} in selector {s:?}"))),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: &'a [Tok],
    pos: usize,
    labels: &'a BTreeMap<String, String>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn bump(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Tok) -> Result<(), SelectorError> {
        match self.bump() {
            Some(t) if t == want => Ok(()),
            other => Err(SelectorError(format!("expected {want:?}, found {other:?}"))),
        }
    }

    fn or(&mut self) -> Result<bool, SelectorError> {
        let mut v = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let rhs = self.and()?;
            v = v || rhs;
        }
        Ok(v)
    }

    fn and(&mut self) -> Result<bool, SelectorError> {
        let mut v = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let rhs = self.unary()?;
            v = v && rhs;
        }
        Ok(v)
    }

    fn unary(&mut self) -> Result<bool, SelectorError> {
        match self.bump() {
            Some(Tok::Not) => Ok(!self.unary()?),
            Some(Tok::LParen) => {
                let v = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(v)
            }
            Some(Tok::Ident(name)) if name == "all" => {
                self.expect(Tok::LParen)?;
                self.expect(Tok::RParen)?;
                Ok(true)
            }
            Some(Tok::Ident(name)) if name == "has" && self.peek() == Some(&Tok::LParen) => {
                self.pos += 1;
                let key = match self.bump() {
                    Some(Tok::Ident(k)) => k,
                    other => return Err(SelectorError(format!("has() of {other:?}"))),
                };
                self.expect(Tok::RParen)?;
                Ok(self.labels.contains_key(&key))
            }
            Some(Tok::Ident(key)) => self.comparison(&key),
            other => Err(SelectorError(format!("unexpected {other:?}"))),
        }
    }

    fn comparison(&mut self, key: &str) -> Result<bool, SelectorError> {
        let value = self.labels.get(key);
        match self.bump() {
            Some(Tok::Eq) => Ok(value == Some(&self.string()?)),
            Some(Tok::Ne) => Ok(value != Some(&self.string()?)),
            Some(Tok::Ident(op)) if op == "in" => {
                let set = self.set()?;
                Ok(value.is_some_and(|v| set.contains(v)))
            }
            Some(Tok::Ident(op)) if op == "not" => {
                match self.bump() {
                    Some(Tok::Ident(i)) if i == "in" => {}
                    other => return Err(SelectorError(format!("expected 'in', found {other:?}"))),
                }
                let set = self.set()?;
                Ok(!value.is_some_and(|v| set.contains(v)))
            }
            other => Err(SelectorError(format!(
                "expected an operator after {key:?}, found {other:?}"
            ))),
        }
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        match self.bump() {
            Some(Tok::Str(s)) => Ok(s),
            other => Err(SelectorError(format!(
                "expected a quoted string, found {other:?}"
            ))),
        }
    }

    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        self.expect(Tok::LBrace)?;
        let mut out = Vec::new();
        if self.peek() == Some(&Tok::RBrace) {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            out.push(self.string()?);
            match self.bump() {
                Some(Tok::Comma) => continue,
                Some(Tok::RBrace) => return Ok(out),
                other => return Err(SelectorError(format!("expected , or }}, found {other:?}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn evaluates_the_selectors_pools_use() -> Result<(), SelectorError> {
        let l = labels(&[("rack", "r1"), ("zone", "a")]);
        assert!(matches("", &l)?);
        assert!(matches("all()", &l)?);
        assert!(!matches("!all()", &l)?);
        assert!(matches("rack == 'r1'", &l)?);
        assert!(!matches("rack == \"r2\"", &l)?);
        assert!(matches("rack != 'r2' && has(zone)", &l)?);
        assert!(matches("!has(gpu) && zone in {'a', 'b'}", &l)?);
        assert!(matches("rack == 'x' || (zone not in {'b'})", &l)?);
        assert!(matches("rack == 'r1' && zone == 'b'", &l).map(|m| !m)?);
        assert!(matches("rack ==", &l).is_err());
        Ok(())
    }
}
