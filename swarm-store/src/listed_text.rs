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
    let mut cut = head.len().min(LISTED_TEXT_MAX);
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
}
