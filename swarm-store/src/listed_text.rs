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
    let mut cut = LISTED_TEXT_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}… [{} more bytes not listed]",
        &text[..cut],
        text.len() - cut
    )
    .into()
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
        let mut v = serde_json::json!({"a": [{"detail": whole}], "n": 1, "s": "x"});
        clip_all(&mut v);
        assert!(v["a"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.len() < LISTED_TEXT_MAX + 64));
        assert_eq!((v["n"].clone(), v["s"].clone()), (1.into(), "x".into()));
    }
}
