//! Free text as lists show it: clipped.
//!
//! A drone may send up to 64 KiB of error detail with each failed build, and
//! lists (history, events, the queue) repeat it per item: with 1,000 such
//! failures, `/api/v1/events/history?limit=10000` answered 133 MB, eight of
//! those reads took the server from 1 GB to 5.8 GB, and the dashboard's
//! queue fetched 65 MB on every refresh (h30). A list carries the first
//! [`LISTED_TEXT_MAX`] bytes of each text and says how much it left out; the
//! whole text stays in the store, in the build's log and in `explain`.

use serde_json::Value;

/// The longest text a list carries whole, in bytes.
pub const LISTED_TEXT_MAX: usize = 2048;

/// `text` cut to at most [`LISTED_TEXT_MAX`] bytes (at a character
/// boundary), with what was left out said at its end.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= LISTED_TEXT_MAX {
        return text.into();
    }
    clip_of(text, text.len()).into()
}

/// [`clip`] of a text read only in part: `head` is its start, `whole` its length in bytes
/// (SQLite gives the first characters and the byte length, so a list never reads the rest).
pub fn clip_of(head: &str, whole: usize) -> String {
    clip_to(head, whole, LISTED_TEXT_MAX)
}

fn clip_to(head: &str, whole: usize, max: usize) -> String {
    let mut cut = head.len().min(max);
    while !head.is_char_boundary(cut) {
        cut -= 1;
    }
    let whole = whole.max(head.len());
    if cut == whole {
        return head.to_owned();
    }
    format!("{}… [{} more bytes not listed]", &head[..cut], whole - cut)
}

/// Clips every string in `v`, at any depth.
pub fn clip_all(v: &mut Value) {
    match v {
        Value::String(s) if s.len() > LISTED_TEXT_MAX => *s = clip(s).into_owned(),
        Value::Array(items) => items.iter_mut().for_each(clip_all),
        Value::Object(map) => map.values_mut().for_each(clip_all),
        _ => {}
    }
}

/// The most bytes of text one item of a list carries over all its strings.
///
/// A drone reports up to 96 environment values of 16 KiB (1.5 MB), and `/api/v1/nodes` repeated
/// each drone's whole: 40 such drones answered 40.7 MB and took the server from 182 to 804 MB
/// (h32). Clipping each value to [`LISTED_TEXT_MAX`] alone would still leave 196 KB a drone.
pub const LISTED_ITEM_MAX: usize = 16 * 1024;

/// [`clip_all`], and once `v`'s strings have taken `budget` bytes, each further string is left out
/// but for a note of its length. Strings are taken in order (a JSON object's keys sorted).
pub fn clip_all_within(v: &mut Value, budget: usize) {
    fn walk(v: &mut Value, left: &mut usize) {
        match v {
            Value::String(s) => {
                let len = s.len();
                let (cut, listed) = fit(s, (*left).min(LISTED_TEXT_MAX));
                if *left == 0 && len > 0 {
                    *s = format!("… [{len} bytes not listed]");
                } else if cut < len {
                    *s = format!("{}… [{} more bytes not listed]", &s[..cut], len - cut);
                }
                *left = left.saturating_sub(listed);
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, left)),
            Value::Object(map) => map.values_mut().for_each(|i| walk(i, left)),
            _ => {}
        }
    }
    walk(v, &mut { budget });
}

/// Where to cut `text` so that it takes at most `max` bytes written as JSON, and how many it
/// takes: a control character is six (`\u0001`), so a budget of raw bytes listed six times
/// more of them (h35 F4).
fn fit(text: &str, max: usize) -> (usize, usize) {
    let mut taken = 0;
    for (i, c) in text.char_indices() {
        let written = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if taken + written > max {
            return (i, taken);
        }
        taken += written;
    }
    (text.len(), taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_says_how_much_is_left_out() {
        assert_eq!(clip("short"), "short");
        let whole = "é".repeat(LISTED_TEXT_MAX); // 2 bytes each
        let clipped = clip(&whole);
        assert!(clipped.starts_with(&"é".repeat(LISTED_TEXT_MAX / 2)));
        assert!(
            clipped.ends_with(&format!("… [{} more bytes not listed]", LISTED_TEXT_MAX)),
            "{clipped}"
        );
        let odd = format!("a{whole}");
        // Byte 2,048 is inside a character: the cut is one byte earlier.
        assert!(clip(&odd).starts_with(&format!("a{}…", "é".repeat(LISTED_TEXT_MAX / 2 - 1))));
        assert!(clip(&odd).ends_with(&format!("[{} more bytes not listed]", odd.len() - 2047)));
        // Read in part: the first 2,048 four-byte characters of a longer text.
        let wide = "😀".repeat(LISTED_TEXT_MAX);
        let clipped = clip_of(&wide, wide.len() + 100);
        assert!(
            clipped.starts_with(&"😀".repeat(LISTED_TEXT_MAX / 4)),
            "{clipped}"
        );
        assert!(clipped.ends_with(&format!(
            "[{} more bytes not listed]",
            wide.len() + 100 - LISTED_TEXT_MAX
        )));
        assert_eq!(clip_of("short", 5), "short");
        assert_eq!(clip_of(&"é".repeat(1500), 3000), clip(&"é".repeat(1500)));
        let mut v = serde_json::json!({"a": [{"detail": whole}], "n": 1, "s": "x"});
        clip_all(&mut v);
        assert!(v["a"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.len() < LISTED_TEXT_MAX + 64));
        assert_eq!((v["n"].clone(), v["s"].clone()), (1.into(), "x".into()));
    }

    #[test]
    fn an_item_carries_at_most_its_budget_and_notes_what_it_left_out() {
        let big = "x".repeat(16 * 1024);
        let mut env: serde_json::Map<String, Value> = (0..96)
            .map(|i| (format!("K{i:02}"), Value::from(big.as_str())))
            .collect();
        env.insert("A".into(), "short".into());
        let mut v = Value::Object(env);
        clip_all_within(&mut v, LISTED_ITEM_MAX);
        let listed = v.to_string().len();
        assert!(listed < LISTED_ITEM_MAX + 96 * 64, "{listed} bytes listed");
        assert_eq!(v["A"], "short");
        // Eight values take the budget (clipped to 2,048 bytes each); the rest are noted.
        let k = |i: usize| {
            v[format!("K{i:02}")]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            k(0).starts_with(&"x".repeat(LISTED_TEXT_MAX)),
            "{}",
            k(0).len()
        );
        assert!(
            k(0).ends_with("[14336 more bytes not listed]"),
            "{}",
            &k(0)[2048..]
        );
        assert!(k(7).ends_with("more bytes not listed]"), "{}", k(7).len());
        assert_eq!(k(8), "… [16384 bytes not listed]");
        assert_eq!(k(95), "… [16384 bytes not listed]");
        // Control characters count as JSON writes them (six bytes each).
        let mut v = serde_json::json!({"K": "\u{1}".repeat(16 * 1024), "L": "y".repeat(4096)});
        clip_all_within(&mut v, LISTED_ITEM_MAX);
        assert!(
            v.to_string().len() < LISTED_TEXT_MAX * 2 + 128,
            "{}",
            v.to_string().len()
        );
        // Within the budget, nothing changes.
        let mut small = serde_json::json!({"CFLAGS": "-O2 -pipe", "USE": ["a", "b"]});
        let before = small.clone();
        clip_all_within(&mut small, LISTED_ITEM_MAX);
        assert_eq!(small, before);
    }
}
