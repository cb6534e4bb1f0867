//! Output shapes: Docker-style tables, 4-space indented JSON, and a small subset of Go
//! templates for `inspect -f` (`{{.A.B}}`, `{{json .A}}`), enough for the documented uses
//! such as `reef inspect -f '{{.State.Pid}}' NAME`.

use serde::Serialize;
use serde_json::Value;

/// Columns padded to the widest cell plus three spaces, as Docker's tabwriter does.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// JSON with Docker's 4-space indentation.
pub fn pretty_json<T: Serialize>(v: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser).expect("values serialise");
    String::from_utf8(buf).expect("JSON is UTF-8")
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        other => other.to_string(),
    }
}

/// Expand `{{.Path}}` and `{{json .Path}}` in `tmpl` against `v`.
pub fn template(tmpl: &str, v: &Value) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = tmpl;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            anyhow::anyhow!("template parsing error: unclosed action in {tmpl:?}")
        })?;
        let action = after[..end].trim();
        let (json, path) = match action.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, action),
        };
        if !path.starts_with('.') {
            anyhow::bail!("template: unsupported action {{{{{action}}}}}: use {{{{.Field}}}} or {{{{json .Field}}}}");
        }
        let val = lookup(v, path)
            .ok_or_else(|| anyhow::anyhow!("template: can't evaluate field {path} in {tmpl:?}"))?;
        out.push_str(&if json { val.to_string() } else { plain(val) });
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_pick_fields() {
        let v: Value = serde_json::json!({"State": {"Pid": 42}, "Name": "/web", "N": {"a": 1}});
        assert_eq!(template("{{.State.Pid}}", &v).unwrap(), "42");
        assert_eq!(template("name={{.Name}}", &v).unwrap(), "name=/web");
        assert_eq!(template("{{json .N}}", &v).unwrap(), "{\"a\":1}");
        assert!(template("{{.Nope}}", &v).is_err());
        assert!(template("{{.State", &v).is_err());
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A     BB\nxyz   1\n");
    }
}
