//! An event's fields written straight into a trace line: the bytes `serde_json` writes for the
//! object of those fields, without building the object. A traced run writes millions of events;
//! building each as a `serde_json::Value` (a B-tree map with an owned key and value per field,
//! then serialized and dropped) was most of its time.
//!
//! The bytes are the same: a `serde_json::Map` keeps its keys in order (it is a `BTreeMap`
//! unless serde_json's `preserve_order` feature is on, which this workspace does not enable), so
//! the fields are written sorted by key, and each value is written as `serde_json` writes it.
//! [`object`] builds the `Value` of the same fields, which `tests::written_as_serde_json_writes`
//! compares byte for byte.

use serde_json::{Map, Value};

/// One field's value.
#[derive(Clone, Debug)]
pub(crate) enum F<'a> {
    /// A string.
    Str(&'a str),
    /// A string built for the event (an outcome name, `|`-joined bits).
    Text(String),
    /// A `0x`-prefixed lower-case hexadecimal string.
    Hex(u64),
    /// A non-negative integer.
    Uint(u64),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// An object of these fields.
    Obj(Vec<(&'static str, F<'a>)>),
}

impl<'a> F<'a> {
    /// A string, or `null` for `None`.
    pub(crate) fn opt_str(s: Option<&'a str>) -> Self {
        s.map_or(F::Null, F::Str)
    }

    /// The JSON value this field writes.
    pub(crate) fn into_value(self) -> Value {
        match self {
            F::Str(s) => Value::from(s),
            F::Text(s) => Value::String(s),
            F::Hex(v) => Value::String(format!("{v:#x}")),
            F::Uint(v) => Value::from(v),
            F::Bool(b) => Value::Bool(b),
            F::Null => Value::Null,
            F::Obj(fields) => object(fields),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            F::Str(s) => write_str(out, s),
            F::Text(s) => write_str(out, s),
            F::Hex(v) => {
                out.push(b'"');
                write_hex(out, *v);
                out.push(b'"');
            }
            F::Uint(v) => write_uint(out, *v),
            F::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            F::Null => out.extend_from_slice(b"null"),
            F::Obj(fields) => {
                out.push(b'{');
                let mut sorted: Vec<&(&'static str, F<'a>)> = fields.iter().collect();
                sorted.sort_unstable_by_key(|(k, _)| *k);
                write_sorted(out, sorted, false);
                out.push(b'}');
            }
        }
    }
}

/// `v` in decimal, as `format!("{v}")` writes it (without going through `fmt`).
pub(crate) fn write_uint(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `v` in lower-case hexadecimal with a `0x` prefix, as `format!("{v:#x}")` writes it.
fn write_hex(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 18];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(b"0x");
    out.extend_from_slice(&buf[i..]);
}

/// `s` as a JSON string, as `serde_json` writes it. A string with no byte that JSON escapes (a
/// byte below 0x20, `"` or `\`; `serde_json` writes every other byte as it is, DEL and non-ASCII
/// characters included) is copied between quotes: the names and keys of a trace are such strings, and the escaping writer, out of line in
/// the test profile, was a tenth of a traced run's time.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// `"key":`.
fn write_key(out: &mut Vec<u8>, key: &str) {
    write_str(out, key);
    out.push(b':');
}

/// `,"k":v` for each field, in key order: an object's fields after keys written before them.
pub(crate) fn write_fields(out: &mut Vec<u8>, fields: &mut [(&'static str, F<'_>)]) {
    fields.sort_unstable_by_key(|(k, _)| *k);
    write_sorted(out, fields.iter(), true);
}

/// `"k":v` for each field, given in key order, comma-separated, with a comma before the first
/// too when `lead`.
fn write_sorted<'f, 'a: 'f>(
    out: &mut Vec<u8>,
    fields: impl IntoIterator<Item = &'f (&'static str, F<'a>)>,
    lead: bool,
) {
    let mut prev = None;
    for (k, v) in fields {
        // An object holds a key once (a `Map` keeps the last value; this would write both).
        debug_assert!(prev != Some(*k), "the key {k} twice");
        if lead || prev.is_some() {
            out.push(b',');
        }
        write_key(out, k);
        v.write(out);
        prev = Some(*k);
    }
}

/// The JSON object of these fields.
pub(crate) fn object(fields: Vec<(&'static str, F<'_>)>) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v.into_value())).collect::<Map<_, _>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A string is written as `serde_json` writes it, escaped or not.
    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        // Every ASCII character (DEL included) alone and inside a name, and characters of two to
        // four bytes: those copied as they are and those escaped alike.
        let mut cases: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
        cases.extend((0u8..=0x7f).map(|b| format!("rmp{}update", char::from(b))));
        cases.extend(["", "é", "\u{2028}", "日本", "🦀", "a\"b\\c\u{1f}"].map(String::from));
        for c in &cases {
            let mut out = Vec::new();
            write_str(&mut out, c);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(c).unwrap(), "{c:?}");
        }
    }

    /// What [`write_fields`] writes is what `serde_json` writes for [`object`] of the same fields
    /// (less the braces), for every kind of value, keys given out of order, strings that need
    /// escaping and a nested object.
    #[test]
    fn written_as_serde_json_writes() {
        let fields = || {
            vec![
                ("size", F::Str("4k")),
                ("b\"q", F::Text("line\nbreak \u{1}é".into())),
                ("gpa", F::Hex(0x20_0000)),
                ("zero", F::Hex(0)),
                ("count", F::Uint(u64::MAX)),
                ("assigned", F::Bool(true)),
                ("immutable", F::Bool(false)),
                ("cause", F::Null),
                (
                    "action",
                    F::Obj(vec![("vcpu", F::Uint(3)), ("op", F::Str("accept")), ("gpa", F::Hex(4096))]),
                ),
                ("Upper", F::opt_str(Some("x"))),
                ("absent", F::opt_str(None)),
            ]
        };
        let mut written = Vec::new();
        write_fields(&mut written, &mut fields());
        let whole = serde_json::to_string(&object(fields())).unwrap();
        assert_eq!(format!("{{{}}}", &String::from_utf8(written).unwrap()[1..]), whole);
        for v in [0, 1, 9, 10, 0xf, 0x10, 4096, 0xdead_beef, u64::MAX - 1, u64::MAX] {
            let (mut dec, mut hex) = (Vec::new(), Vec::new());
            write_uint(&mut dec, v);
            write_hex(&mut hex, v);
            assert_eq!(
                (String::from_utf8(dec).unwrap(), String::from_utf8(hex).unwrap()),
                (format!("{v}"), format!("{v:#x}"))
            );
        }
        assert!(
            whole.starts_with("{\"Upper\":\"x\",\"absent\":null,\"action\":{\"gpa\":\"0x1000\",\"op\""),
            "{whole}"
        );
    }
}
