//! Comparing two JSON replies by shape.
//!
//! Two values have the same shape when they have the same JSON type and, for objects, the same
//! keys with recursively the same shapes; arrays compare element by element. Values (strings,
//! numbers, booleans) are compared only at paths the test opts in to, because most replies carry
//! host- or run-specific values (pids, times, handles).
//!
//! Paths are `/`-separated keys from the root, e.g. `/return/count`; `*` matches any key or array
//! index, e.g. `/return/*/user`. A path also covers everything below it.

use serde_json::Value;

/// Which parts of the values must be equal beyond the shape.
#[derive(Debug, Default, Clone)]
pub struct ShapeOpts {
    /// Paths whose values must be equal.
    pub values: Vec<String>,
    /// Compare every value (the whole documents must be equal).
    pub all_values: bool,
    /// Array paths whose lengths may differ (then only common elements are compared).
    pub any_len: Vec<String>,
}

impl ShapeOpts {
    /// Shape only.
    pub fn shape() -> ShapeOpts {
        ShapeOpts::default()
    }
    /// Every value equal.
    pub fn exact() -> ShapeOpts {
        ShapeOpts {
            all_values: true,
            ..ShapeOpts::default()
        }
    }
    /// Shape plus equality at the given paths.
    pub fn values(paths: &[&str]) -> ShapeOpts {
        ShapeOpts {
            values: paths.iter().map(|p| p.to_string()).collect(),
            ..ShapeOpts::default()
        }
    }
    /// Allow the arrays at `paths` to differ in length.
    pub fn any_len(mut self, paths: &[&str]) -> ShapeOpts {
        self.any_len.extend(paths.iter().map(|p| p.to_string()));
        self
    }
}

/// Compare `a` and `b`; returns every mismatch as a readable line (empty = same shape).
pub fn compare_shape(a: &Value, b: &Value, opts: &ShapeOpts) -> Vec<String> {
    let mut out = Vec::new();
    walk(a, b, &mut Vec::new(), opts, &mut out);
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn render(path: &[String]) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        format!("/{}", path.join("/"))
    }
}

/// True when `pattern` names `path` or one of its ancestors.
fn covers(pattern: &str, path: &[String]) -> bool {
    let segs: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    segs.len() <= path.len() && segs.iter().zip(path).all(|(s, p)| *s == "*" || s == p)
}

fn matches_exactly(pattern: &str, path: &[String]) -> bool {
    let n = pattern.split('/').filter(|s| !s.is_empty()).count();
    n == path.len() && covers(pattern, path)
}

fn walk(a: &Value, b: &Value, path: &mut Vec<String>, opts: &ShapeOpts, out: &mut Vec<String>) {
    let values = opts.all_values || opts.values.iter().any(|p| covers(p, path));
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            for (k, va) in ma {
                path.push(k.clone());
                match mb.get(k) {
                    Some(vb) => walk(va, vb, path, opts, out),
                    None => out.push(format!("{}: only in left ({va})", render(path))),
                }
                path.pop();
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) {
                    path.push(k.clone());
                    out.push(format!("{}: only in right ({vb})", render(path)));
                    path.pop();
                }
            }
        }
        (Value::Array(xa), Value::Array(xb)) => {
            let any_len = opts.any_len.iter().any(|p| matches_exactly(p, path));
            if xa.len() != xb.len() && !any_len {
                out.push(format!(
                    "{}: array lengths differ ({} vs {})",
                    render(path),
                    xa.len(),
                    xb.len()
                ));
            }
            for (i, (va, vb)) in xa.iter().zip(xb).enumerate() {
                path.push(i.to_string());
                walk(va, vb, path, opts, out);
                path.pop();
            }
        }
        _ if type_name(a) != type_name(b) => out.push(format!(
            "{}: type {} vs {} ({a} vs {b})",
            render(path),
            type_name(a),
            type_name(b)
        )),
        _ if values && a != b => out.push(format!("{}: value {a} vs {b}", render(path))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_shape_different_values_passes() {
        let a = json!({"return": {"pid": 1, "x": [1, 2]}});
        let b = json!({"return": {"pid": 7, "x": [3, 4]}});
        assert!(compare_shape(&a, &b, &ShapeOpts::shape()).is_empty());
    }

    #[test]
    fn reports_missing_keys_types_and_opted_in_values() {
        let a = json!({"return": {"count": 3, "eof": false, "buf-b64": "YQ=="}});
        let b = json!({"return": {"count": "3", "buf-b64": "Yg=="}});
        let d = compare_shape(&a, &b, &ShapeOpts::values(&["/return/buf-b64"]));
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d
            .iter()
            .any(|l| l.contains("/return/count: type number vs string")));
        assert!(d.iter().any(|l| l.contains("/return/eof: only in left")));
        assert!(d.iter().any(|l| l.contains("/return/buf-b64: value")));
    }

    #[test]
    fn wildcards_and_array_lengths() {
        let a = json!({"return": [{"user": "a", "t": 1}, {"user": "b", "t": 2}]});
        let b = json!({"return": [{"user": "a", "t": 5}]});
        let opts = ShapeOpts::values(&["/return/*/user"]);
        assert_eq!(compare_shape(&a, &b, &opts).len(), 1);
        let opts = opts.any_len(&["/return"]);
        assert!(compare_shape(&a, &b, &opts).is_empty());
        let c = json!({"return": [{"user": "z", "t": 6}]});
        assert_eq!(
            compare_shape(&b, &c, &ShapeOpts::values(&["/return/*/user"])).len(),
            1
        );
        assert_eq!(compare_shape(&b, &c, &ShapeOpts::exact()).len(), 2);
    }
}
