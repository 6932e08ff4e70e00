//! Platform client: the Feishu / Lark Open Platform endpoints the job calls, and their error kinds.

mod client;
mod error;
pub mod model;

pub use client::{Client, ClientConfig, ClientStats, Credentials};
pub use error::{PlatformError, QUERY_ENDPOINT};

/// Feishu (China) host; Lark (international) is `https://open.larksuite.com`.
pub const DEFAULT_BASE_URL: &str = "https://open.feishu.cn";
