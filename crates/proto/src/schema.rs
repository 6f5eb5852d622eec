//! Argument schemas and their validation, with qemu's error texts.
//!
//! qemu validates arguments with a QAPI visitor before a command runs; scripts and clients match
//! on its texts (`Parameter 'id' is missing`). Each command here declares its parameters as a
//! static [`Param`] table (mirroring qga/qapi-schema.json) and [`validate`] checks a request's
//! arguments against it in qemu's order: members in schema order (missing, then type), then
//! unexpected members. Only after validation does serde turn the arguments into a typed struct.

use crate::error::CommandError;
use serde_json::{Map, Value};

/// A QAPI type, as far as validation needs it.
#[derive(Debug, Clone, Copy)]
pub enum Type {
    /// A JSON integer that fits in i64.
    Int,
    /// A JSON integer that fits in u64; like qemu, negative i64 values are accepted (and wrap).
    U64,
    Str,
    Bool,
    /// Any JSON number.
    Number,
    /// Any JSON value.
    Any,
    /// A string from a fixed set.
    Enum(&'static [&'static str]),
    List(&'static Type),
    Object(&'static [Param]),
    /// One of several types, chosen by the JSON type of the value; `name` appears in errors.
    Alternate {
        name: &'static str,
        branches: &'static [Type],
    },
}

/// One member of a command's argument object.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub ty: Type,
    pub optional: bool,
}

impl Param {
    pub const fn required(name: &'static str, ty: Type) -> Self {
        Self {
            name,
            ty,
            optional: false,
        }
    }

    pub const fn optional(name: &'static str, ty: Type) -> Self {
        Self {
            name,
            ty,
            optional: true,
        }
    }
}

/// Checks `args` against `params` the way qemu's input visitor does.
pub fn validate(args: &Map<String, Value>, params: &[Param]) -> Result<(), CommandError> {
    validate_members(args, params, "")
}

fn validate_members(
    args: &Map<String, Value>,
    params: &[Param],
    prefix: &str,
) -> Result<(), CommandError> {
    for param in params {
        let path = join(prefix, param.name);
        match args.get(param.name) {
            None if param.optional => {}
            None => {
                return Err(CommandError::invalid_params(format!(
                    "Parameter '{path}' is missing"
                )))
            }
            Some(value) => check_type(value, &param.ty, &path)?,
        }
    }
    if let Some(extra) = args
        .keys()
        .find(|key| !params.iter().any(|p| p.name == key.as_str()))
    {
        let path = join(prefix, extra);
        return Err(CommandError::invalid_params(format!(
            "Parameter '{path}' is unexpected"
        )));
    }
    Ok(())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn check_type(value: &Value, ty: &Type, path: &str) -> Result<(), CommandError> {
    let mismatch = |expected: &str| {
        Err(CommandError::invalid_params(format!(
            "Invalid parameter type for '{path}', expected: {expected}"
        )))
    };
    match (ty, value) {
        (Type::Any, _) => Ok(()),
        (Type::Int, v) if v.as_i64().is_some() => Ok(()),
        (Type::Int, _) => mismatch("integer"),
        (Type::U64, v) if v.as_u64().is_some() || v.as_i64().is_some() => Ok(()),
        // qemu words a bad uint64 differently from a bad integer.
        (Type::U64, _) => Err(CommandError::invalid_params(format!(
            "Parameter '{path}' expects uint64"
        ))),
        (Type::Number, Value::Number(_)) => Ok(()),
        (Type::Number, _) => mismatch("number"),
        (Type::Str, Value::String(_)) => Ok(()),
        (Type::Str, _) => mismatch("string"),
        (Type::Bool, Value::Bool(_)) => Ok(()),
        (Type::Bool, _) => mismatch("boolean"),
        (Type::Enum(values), Value::String(s)) => {
            if values.contains(&s.as_str()) {
                Ok(())
            } else {
                Err(CommandError::invalid_params(format!(
                    "Parameter '{path}' does not accept value '{s}'"
                )))
            }
        }
        (Type::Enum(_), _) => mismatch("string"),
        (Type::List(item), Value::Array(items)) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_type(v, item, &format!("{path}[{i}]"))),
        (Type::List(_), _) => mismatch("array"),
        (Type::Object(params), Value::Object(map)) => validate_members(map, params, path),
        (Type::Object(_), _) => mismatch("object"),
        (Type::Alternate { name, branches }, v) => match branches.iter().find(|b| accepts(b, v)) {
            Some(branch) => check_type(v, branch, path),
            None => mismatch(name),
        },
    }
}

/// Whether a value's JSON type selects this alternate branch (qemu picks by type, then validates).
fn accepts(ty: &Type, value: &Value) -> bool {
    matches!(
        (ty, value),
        (Type::Any, _)
            | (Type::Int | Type::U64, Value::Number(_))
            | (Type::Number, Value::Number(_))
            | (Type::Str | Type::Enum(_), Value::String(_))
            | (Type::Bool, Value::Bool(_))
            | (Type::List(_), Value::Array(_))
            | (Type::Object(_), Value::Object(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WHENCE: Type = Type::Alternate {
        name: "GuestFileWhence",
        branches: &[Type::Int, Type::Enum(&["set", "cur", "end"])],
    };
    const PARAMS: &[Param] = &[
        Param::required("id", Type::Int),
        Param::optional("arg", Type::List(&Type::Str)),
        Param::optional("whence", WHENCE),
        Param::optional("n", Type::U64),
    ];

    fn check(args: Value) -> Result<(), String> {
        let Value::Object(map) = args else {
            return Err("not an object".into());
        };
        validate(&map, PARAMS).map_err(|e| e.desc)
    }

    #[test]
    fn qemu_texts() {
        assert_eq!(check(json!({"id": 1})), Ok(()));
        assert_eq!(check(json!({})), Err("Parameter 'id' is missing".into()));
        assert_eq!(
            check(json!({"id": 1.5})),
            Err("Invalid parameter type for 'id', expected: integer".into())
        );
        assert_eq!(
            check(json!({"id": 1, "foo": 2, "bar": 3})),
            Err("Parameter 'bar' is unexpected".into())
        );
        assert_eq!(
            check(json!({"id": 1, "arg": [1]})),
            Err("Invalid parameter type for 'arg[0]', expected: string".into())
        );
        assert_eq!(
            check(json!({"id": 1, "arg": "x"})),
            Err("Invalid parameter type for 'arg', expected: array".into())
        );
        assert_eq!(check(json!({"id": 1, "whence": 7})), Ok(()));
        assert_eq!(
            check(json!({"id": 1, "n": 18446744073709551615_u64})),
            Ok(())
        );
        assert_eq!(check(json!({"id": 1, "n": -1})), Ok(()));
        assert_eq!(
            check(json!({"id": 1, "n": 1.0})),
            Err("Parameter 'n' expects uint64".into())
        );
        assert_eq!(
            check(json!({"id": 1, "whence": "bogus"})),
            Err("Parameter 'whence' does not accept value 'bogus'".into())
        );
        assert_eq!(
            check(json!({"id": 1, "whence": true})),
            Err("Invalid parameter type for 'whence', expected: GuestFileWhence".into())
        );
    }
}
