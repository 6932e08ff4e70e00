//! Third-party ("external") approvals: instances made in another system and mirrored into the
//! approval center, as documents ([`model`]), the rules they must meet before they are sent
//! ([`validate`]), and the tables they are landed as ([`table`]).
//!
//! Pure like the rest of the crate: the documents come in as JSON values and go out as typed
//! instances, problems and Arrow batches.

pub mod model;
pub mod table;
pub mod validate;

pub use model::{ExternalInstance, MsTime};
pub use validate::{Problem, validate};
