//! Integer expressions over hyperparameters, used in shapes: `num_heads*head_dim`,
//! `(hidden_size + 1) / 2`. Grammar: sum := prod (('+'|'-') prod)*; prod := atom (('*'|'/') atom)*;
//! atom := integer | name | '(' sum ')'.

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Int(i64),
    Name(String),
    Bin(Box<Expr>, char, Box<Expr>),
}

impl Expr {
    /// Parses an expression; the error says what was expected and where (character offset).
    pub fn parse(text: &str) -> Result<Expr, String> {
        let mut p = Parser {
            chars: text.chars().collect(),
            pos: 0,
            depth: 0,
        };
        let e = p.sum()?;
        p.skip_ws();
        if p.pos < p.chars.len() {
            return Err(format!(
                "unexpected '{}' at character {} of '{text}'",
                p.chars[p.pos],
                p.pos + 1
            ));
        }
        Ok(e)
    }

    /// Every name the expression mentions, in order.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Expr::Int(_) => vec![],
            Expr::Name(n) => vec![n],
            Expr::Bin(a, _, b) => {
                let mut v = a.names();
                v.extend(b.names());
                v
            }
        }
    }

    /// Evaluates with `lookup` for names; fails on unknown names, overflow, division by zero or
    /// an inexact division.
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<i64>) -> Result<i64, String> {
        match self {
            Expr::Int(v) => Ok(*v),
            Expr::Name(n) => lookup(n).ok_or_else(|| format!("unknown hyperparameter '{n}'")),
            Expr::Bin(a, op, b) => {
                let (x, y) = (a.eval(lookup)?, b.eval(lookup)?);
                let r = match op {
                    '+' => x.checked_add(y),
                    '-' => x.checked_sub(y),
                    '*' => x.checked_mul(y),
                    _ => {
                        if y == 0 {
                            return Err("division by zero".into());
                        }
                        if x % y != 0 {
                            return Err(format!("{x} is not divisible by {y}"));
                        }
                        Some(x / y)
                    }
                };
                r.ok_or_else(|| "integer overflow".into())
            }
        }
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn skip_ws(&mut self) {
        while self.pos < self.chars.len() && self.chars[self.pos].is_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.get(self.pos).copied()
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut e = self.prod()?;
        while let Some(c @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            e = Expr::Bin(Box::new(e), c, Box::new(self.prod()?));
        }
        Ok(e)
    }

    fn prod(&mut self) -> Result<Expr, String> {
        let mut e = self.atom()?;
        while let Some(c @ ('*' | '/')) = self.peek() {
            self.pos += 1;
            e = Expr::Bin(Box::new(e), c, Box::new(self.atom()?));
        }
        Ok(e)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.peek() {
            None => Err("expression ends too early".into()),
            Some('(') => {
                self.depth += 1;
                if self.depth > 32 {
                    return Err("expression nested too deeply".into());
                }
                self.pos += 1;
                let e = self.sum()?;
                if self.peek() != Some(')') {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.pos < self.chars.len() && self.chars[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                let s: String = self.chars[start..self.pos].iter().collect();
                s.parse::<i64>()
                    .map(Expr::Int)
                    .map_err(|_| format!("number '{s}' is too large"))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let start = self.pos;
                while self.pos < self.chars.len()
                    && (self.chars[self.pos].is_ascii_alphanumeric() || self.chars[self.pos] == '_')
                {
                    self.pos += 1;
                }
                Ok(Expr::Name(self.chars[start..self.pos].iter().collect()))
            }
            Some(c) => Err(format!("unexpected '{c}' at character {}", self.pos + 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Result<i64, String> {
        Expr::parse(s)?.eval(&|n| match n {
            "a" => Some(16),
            "b" => Some(128),
            _ => None,
        })
    }

    #[test]
    fn evaluates() {
        assert_eq!(ev("a*b"), Ok(2048));
        assert_eq!(ev(" (a + 4) / 4 "), Ok(5));
        assert_eq!(ev("b - a*2"), Ok(96));
        assert_eq!(ev("7"), Ok(7));
    }

    #[test]
    fn rejects() {
        assert_eq!(ev("a*c"), Err("unknown hyperparameter 'c'".into()));
        assert_eq!(ev("a/0"), Err("division by zero".into()));
        assert_eq!(ev("a/3"), Err("16 is not divisible by 3".into()));
        assert!(ev("a*").is_err());
        assert!(ev("(a").is_err());
        assert!(ev("a $ b").is_err());
        assert!(ev("99999999999999999999").is_err());
        assert!(ev(&"(".repeat(100)).is_err());
        // A character that starts nothing is named, with where it is.
        assert_eq!(ev("a*@"), Err("unexpected '@' at character 3".into()));
    }

    #[test]
    fn nesting_is_bounded_at_32_and_groups_side_by_side_do_not_add_up() {
        let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(ev(&nested(32)), Ok(16));
        assert_eq!(ev(&nested(33)), Err("expression nested too deeply".into()));
        let side_by_side = vec!["(a)"; 40].join("+");
        assert_eq!(ev(&side_by_side), Ok(640));
    }
}
