//! The LinkedIn Marketing API as the handlers use it. `analytics`: ad analytics queries and
//! answers, pure (no I/O), so that the exact requests are unit-tested.

pub mod analytics;
