//! A bound on the memory of replies waiting for their clients.
//!
//! A reply is built whole before it is sent, and a client that reads slowly
//! holds it until its connection's pace runs dry (`pace`): 400
//! connections asking for a 563 KB page of events and reading nothing took
//! the server from 118 MB to 1.39 GB (h110). Replies larger than one write
//! count against [`REPLY_BYTES_MAX`] while they are sent; one that would
//! pass it is answered 503 instead, and its memory goes at once.

use super::request::{Response, ResponseBody};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of large replies being sent at once, over all connections.
pub(super) const REPLY_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Replies up to one write do not count: the front door's threads bound them.
const SMALL_REPLY: usize = super::limits::ONE_WRITE_MAX;

/// A reply's share of the budget, given back when it is dropped.
pub(super) struct Held<'a> {
    budget: &'a AtomicU64,
    bytes: u64,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// Books `resp`'s bytes in `budget` (bytes being sent now, out of `max`),
/// or, when they would not fit, gives the 503 to send in its place.
pub(super) fn hold<'a>(
    budget: &'a AtomicU64,
    max: u64,
    resp: &Response,
) -> Result<Option<Held<'a>>, Response> {
    let ResponseBody::Bytes(body) = &resp.body else {
        return Ok(None);
    };
    if body.len() <= SMALL_REPLY {
        return Ok(None);
    }
    let bytes = body.len() as u64;
    let before = budget.fetch_add(bytes, Ordering::SeqCst);
    let held = Held { budget, bytes };
    if before + bytes <= max {
        return Ok(Some(held));
    }
    drop(held);
    let why = format!(
        "server busy: {} MiB of replies are waiting for clients that read slowly; retry shortly",
        before / (1024 * 1024)
    );
    Err(Response::json(
        503,
        serde_json::json!({ "error": why }).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(n: usize) -> Response {
        Response {
            status: 200,
            content_type: "application/octet-stream",
            headers: Vec::new(),
            body: ResponseBody::Bytes(vec![0; n]),
        }
    }

    #[test]
    fn large_replies_are_refused_past_the_budget_and_give_their_share_back() {
        let budget = AtomicU64::new(0);
        let max = 3 * SMALL_REPLY as u64;
        let large = big(SMALL_REPLY + 1);
        let Ok(Some(a)) = hold(&budget, max, &large) else {
            panic!("the first fits")
        };
        let Ok(Some(b)) = hold(&budget, max, &large) else {
            panic!("the second fits")
        };
        // A third would pass the budget: 503, and nothing more is booked.
        let Err(busy) = hold(&budget, max, &large) else {
            panic!("the third is over the budget")
        };
        assert_eq!(busy.status, 503);
        assert_eq!(budget.load(Ordering::SeqCst), 2 * (SMALL_REPLY as u64 + 1));
        // Small replies never count.
        assert!(matches!(hold(&budget, max, &big(SMALL_REPLY)), Ok(None)));
        drop(a);
        let Ok(Some(again)) = hold(&budget, max, &large) else {
            panic!("a sent reply gave its share back")
        };
        drop(b);
        drop(again);
        assert_eq!(budget.load(Ordering::SeqCst), 0);
    }
}
