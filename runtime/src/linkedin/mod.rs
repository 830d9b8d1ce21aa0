//! The LinkedIn Marketing API as the handlers use it, pure (no I/O) so that the exact
//! requests are unit-tested: `analytics` (ad analytics queries and answers) and `creatives`
//! (creatives, posts and images, and the raw creatives rows built from them); `api`, the
//! HTTP client with the retry budget; and `oauth`, the token refresh and introspection client.

pub mod analytics;
pub mod api;
pub mod creatives;
pub mod oauth;
