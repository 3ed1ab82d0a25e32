//! `${VAR}` and `${VAR:-default}` in string values; `$${` is a literal `${`.

/// What went wrong in one string; the messages never contain a variable's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InterpError {
    Unset(String),
    Syntax(String),
}

impl InterpError {
    pub(crate) fn message(&self) -> String {
        match self {
            InterpError::Unset(name) => format!("environment variable {name} is not set"),
            InterpError::Syntax(what) => what.clone(),
        }
    }
}

/// The interpolated text and whether any variable was substituted, or every error found.
/// `${VAR:-default}` uses the default when VAR is unset or empty, as the shell does.
pub(crate) fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), Vec<InterpError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut substituted = false;
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body_and_more) = after.strip_prefix("${") {
            let Some(close) = body_and_more.find('}') else {
                errors.push(InterpError::Syntax(
                    "unclosed \"${\" (write \"$${\" for a literal \"${\")".into(),
                ));
                rest = "";
                break;
            };
            let body = &body_and_more[..close];
            rest = &body_and_more[close + 1..];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            if !is_var_name(name) {
                errors.push(InterpError::Syntax(format!(
                    "\"${{{name}}}\" is not a valid variable reference (expected ${{NAME}} or ${{NAME:-default}}, NAME made of A-Z, a-z, 0-9, _)"
                )));
                continue;
            }
            substituted = true;
            match (env(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => errors.push(InterpError::Unset(name.to_owned())),
            }
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok((out, substituted))
    } else {
        Err(errors)
    }
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "APP" => Some("wx123".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(s: &str) -> Result<(String, bool), Vec<InterpError>> {
        interpolate(s, &env)
    }

    #[test]
    fn substitutes_and_defaults() {
        assert_eq!(run("plain"), Ok(("plain".into(), false)));
        assert_eq!(run("${APP}"), Ok(("wx123".into(), true)));
        assert_eq!(run("a-${APP}-b"), Ok(("a-wx123-b".into(), true)));
        assert_eq!(run("${NOPE:-x y}"), Ok(("x y".into(), true)));
        assert_eq!(run("${EMPTY:-d}"), Ok(("d".into(), true)));
        assert_eq!(run("${EMPTY}"), Ok((String::new(), true)));
        assert_eq!(run("${APP:-d}"), Ok(("wx123".into(), true)));
        assert_eq!(run("${NOPE:-}"), Ok((String::new(), true)));
    }

    #[test]
    fn dollars_that_are_not_references_stay() {
        assert_eq!(run("$APP $ 5$"), Ok(("$APP $ 5$".into(), false)));
        assert_eq!(run("$${APP}"), Ok(("${APP}".into(), false)));
        assert_eq!(run("$$${APP}"), Ok(("$${APP}".into(), false)));
    }

    #[test]
    fn reports_every_missing_variable_and_bad_syntax() {
        assert_eq!(
            run("${A1}/${APP}/${A2}"),
            Err(vec![
                InterpError::Unset("A1".into()),
                InterpError::Unset("A2".into())
            ])
        );
        assert!(matches!(
            run("${1X}").map_err(|e| e.len() == 1 && matches!(e[0], InterpError::Syntax(_))),
            Err(true)
        ));
        assert!(matches!(
            run("x${APP").map_err(|e| e.len() == 1 && matches!(e[0], InterpError::Syntax(_))),
            Err(true)
        ));
        assert!(matches!(
            run("${}").map_err(|e| e.len() == 1 && matches!(e[0], InterpError::Syntax(_))),
            Err(true)
        ));
        assert_eq!(
            InterpError::Unset("WECHAT_APP_SECRET".into()).message(),
            "environment variable WECHAT_APP_SECRET is not set"
        );
    }
}
