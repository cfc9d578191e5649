//! Shape and dim expressions: a spec's shape list evaluated against the hyperparameters and
//! the declared symbolic dims.

use super::Lowerer;
use crate::ir::{Dim, Shape};
use crate::spec::expr::Expr;
use crate::spec::yaml::Y;

impl Lowerer<'_> {
    fn int_hyper(&self, name: &str) -> Option<i64> {
        self.spec.int(name)
    }

    /// Evaluates a shape list.
    pub(super) fn shape(&mut self, y: &Y, path: &str) -> Option<Shape> {
        let Some(items) = y.as_seq() else {
            self.r.err(
                y.loc,
                path,
                format!("a shape must be a list of dims, found {}", y.describe()),
            );
            return None;
        };
        let mut dims = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = item.as_str() else {
                self.r.err(
                    item.loc,
                    path,
                    format!(
                        "a dim must be a name or an expression, found {}",
                        item.describe()
                    ),
                );
                ok = false;
                continue;
            };
            if self.sym.contains(text.trim()) {
                dims.push(Dim::Sym(text.trim().to_string()));
                continue;
            }
            let value = Expr::parse(text).and_then(|e| {
                for n in e.names() {
                    if self.sym.contains(n) {
                        return Err(format!(
                            "symbolic dim '{n}' cannot appear inside an expression"
                        ));
                    }
                    if self.spec.hyper.contains_key(n) && self.int_hyper(n).is_none() {
                        return Err(format!("'{n}' is not an integer hyperparameter"));
                    }
                }
                e.eval(&|n| self.int_hyper(n))
            });
            match value {
                Ok(v) if v >= 1 => dims.push(Dim::Fixed(v as usize)),
                Ok(v) => {
                    self.r.err(
                        item.loc,
                        path,
                        format!("dim '{text}' evaluates to {v}; dims must be at least 1"),
                    );
                    ok = false;
                }
                Err(e) => {
                    self.r.err(item.loc, path, format!("bad dim '{text}': {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some(Shape(dims))
    }
}
