//! What the dashboard keeps between requests (held in `Shared`): the event stream's feed
//! and the charts' series. A leaf, so that `Shared` holding it does not import the dashboard's
//! handlers, which read `Shared`.

use super::{series, stream};
use std::path::Path;
use std::sync::Arc;

/// What the dashboard keeps between requests.
pub(crate) struct Dashboard {
    pub(crate) feed: Arc<stream::Feed>,
    pub(crate) series: series::Series,
}

impl Dashboard {
    /// The series file lives beside the database.
    pub(crate) fn new(db_path: &Path, now_ms: u64) -> Dashboard {
        let file = db_path.with_file_name("timeseries.jsonl");
        Dashboard {
            feed: Arc::new(stream::Feed::default()),
            series: series::Series::open(Some(&file), now_ms),
        }
    }
}
