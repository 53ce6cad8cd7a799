//! Linear-time stand-ins for the SQLite string functions whose built-in
//! versions take time in the product of their arguments' lengths: `instr`,
//! `replace`, and `trim`/`ltrim`/`rtrim` with a set of characters.
//!
//! The explorer's time budget is checked between SQLite's VM steps, and one
//! call is one step: `instr` of a 500 kB needle in a 1 MB haystack took
//! 5.5 s, so a five-row query ran 27 s against a 2 s budget. These versions
//! (memchr's `memmem`, a set of characters) cost in proportion to the input,
//! so no single call outlasts the budget by more than a few milliseconds.
//! Results are SQLite's: NULL in, NULL out; blobs by bytes, text by
//! characters; numbers as their text.

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Result};

/// Registers the stand-ins on the explorer's connection (they replace the
/// built-ins of the same name and arity).
pub(crate) fn register(conn: &Connection) -> Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("instr", 2, flags, instr)?;
    conn.create_scalar_function("replace", 3, flags, replace)?;
    for (name, ends) in [
        ("trim", Ends::Both),
        ("ltrim", Ends::Left),
        ("rtrim", Ends::Right),
    ] {
        conn.create_scalar_function(name, 2, flags, move |ctx| trim(ctx, ends))?;
    }
    Ok(())
}

/// An argument as SQLite's string functions see it: `None` for NULL, bytes
/// for a blob, text (a number as its text) otherwise.
enum Arg {
    Null,
    Blob(Vec<u8>),
    Text(String),
}

fn arg(ctx: &Context<'_>, i: usize) -> Arg {
    match ctx.get_raw(i) {
        ValueRef::Null => Arg::Null,
        ValueRef::Blob(b) => Arg::Blob(b.to_vec()),
        ValueRef::Text(t) => Arg::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Arg::Text(n.to_string()),
        ValueRef::Real(r) => Arg::Text(real_text(r)),
    }
}

/// A real as SQLite prints it (`1.0`, not `1`).
fn real_text(r: f64) -> String {
    if r.fract() == 0.0 && r.abs() < 1e15 {
        format!("{r:.1}")
    } else {
        r.to_string()
    }
}

fn bytes(a: &Arg) -> &[u8] {
    match a {
        Arg::Null => &[],
        Arg::Blob(b) => b,
        Arg::Text(t) => t.as_bytes(),
    }
}

/// `instr(X, Y)`: 1-based position of the first Y in X, 0 when absent; by
/// bytes when both are blobs, else by characters.
fn instr(ctx: &Context<'_>) -> Result<Value> {
    let (x, y) = (arg(ctx, 0), arg(ctx, 1));
    if matches!(x, Arg::Null) || matches!(y, Arg::Null) {
        return Ok(Value::Null);
    }
    let Some(at) = memchr::memmem::find(bytes(&x), bytes(&y)) else {
        return Ok(Value::Integer(0));
    };
    let pos = match (&x, &y) {
        (Arg::Blob(_), Arg::Blob(_)) => at,
        _ => String::from_utf8_lossy(&bytes(&x)[..at]).chars().count(),
    };
    Ok(Value::Integer(i64::try_from(pos).unwrap_or(i64::MAX) + 1))
}

/// `replace(X, Y, Z)`: every Y in X replaced by Z; X as it is when Y is empty.
fn replace(ctx: &Context<'_>) -> Result<Value> {
    let (x, y, z) = (arg(ctx, 0), arg(ctx, 1), arg(ctx, 2));
    if [&x, &y, &z].iter().any(|a| matches!(a, Arg::Null)) {
        return Ok(Value::Null);
    }
    let (hay, pat, with) = (bytes(&x), bytes(&y), bytes(&z));
    if pat.is_empty() {
        return Ok(Value::Text(String::from_utf8_lossy(hay).into_owned()));
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut last = 0;
    for at in memchr::memmem::find_iter(hay, pat) {
        if at < last {
            continue;
        }
        out.extend_from_slice(&hay[last..at]);
        out.extend_from_slice(with);
        last = at + pat.len();
    }
    out.extend_from_slice(&hay[last..]);
    Ok(Value::Text(String::from_utf8_lossy(&out).into_owned()))
}

#[derive(Clone, Copy)]
enum Ends {
    Both,
    Left,
    Right,
}

/// `trim(X, Y)` and its one-sided forms: the characters of Y removed from
/// the ends of X, as text (blobs too, as SQLite does).
fn trim(ctx: &Context<'_>, ends: Ends) -> Result<Value> {
    let (x, y) = (arg(ctx, 0), arg(ctx, 1));
    if matches!(x, Arg::Null) || matches!(y, Arg::Null) {
        return Ok(Value::Null);
    }
    let (left, right) = match ends {
        Ends::Both => (true, true),
        Ends::Left => (true, false),
        Ends::Right => (false, true),
    };
    let text = String::from_utf8_lossy(bytes(&x)).into_owned();
    // SQLite reads the set as a C string: it ends at the first NUL.
    let set_bytes = bytes(&y);
    let set_bytes = &set_bytes[..memchr::memchr(0, set_bytes).unwrap_or(set_bytes.len())];
    let set: std::collections::HashSet<char> = String::from_utf8_lossy(set_bytes).chars().collect();
    let mut s = text.as_str();
    if left {
        s = s.trim_start_matches(|c| set.contains(&c));
    }
    if right {
        s = s.trim_end_matches(|c| set.contains(&c));
    }
    Ok(Value::Text(s.to_string()))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// The same expressions on a connection with the built-ins and one with
    /// the stand-ins give the same values.
    #[test]
    fn the_stand_ins_answer_as_sqlites_own_functions_do() {
        let builtin = Connection::open_in_memory().expect("db");
        let ours = Connection::open_in_memory().expect("db");
        super::register(&ours).expect("register");
        for expr in [
            "instr('hello world', 'o')",
            "instr('héllo wörld', 'ö')",
            "instr('abc', '')",
            "instr('abc', 'z')",
            "instr(x'00010203', x'0203')",
            "instr(12345, 34)",
            "instr(1.5, '.')",
            "instr(NULL, 'a')",
            "instr('a', NULL)",
            "replace('aaaa', 'aa', 'b')",
            "replace('héllo', 'l', 'L')",
            "replace('abc', '', 'x')",
            "replace('abc', 'b', NULL)",
            "replace(12.0, '.', ',')",
            "trim('xxhixx', 'x')",
            "ltrim('xxhixx', 'x')",
            "rtrim('xxhixx', 'x')",
            "trim('äbä', 'ä')",
            "trim('abc', '')",
            "trim(NULL, 'a')",
            "hex(trim(x'000100', x'00'))",
            "typeof(trim(x'000100', x'00'))",
            "typeof(replace(x'00', x'00', x'01'))",
        ] {
            let q = format!("SELECT quote({expr})");
            let want: String = builtin.query_row(&q, [], |r| r.get(0)).expect(&q);
            let got: String = ours.query_row(&q, [], |r| r.get(0)).expect(&q);
            assert_eq!(got, want, "{expr}");
        }
    }

    /// A long needle that is not in a long haystack gives 0. (How long a
    /// call takes is for `tests/explorer.rs`, where the budget stops a
    /// quadratic one.)
    #[test]
    fn a_long_needle_not_in_a_long_haystack_gives_zero() {
        let ours = Connection::open_in_memory().expect("db");
        super::register(&ours).expect("register");
        let n: i64 = ours
            .query_row(
                "SELECT instr(printf('%.*c', 1000000, 'a'), printf('%.*c', 500000, 'a') || 'b')",
                [],
                |r| r.get(0),
            )
            .expect("instr");
        assert_eq!(n, 0);
    }
}
