//! The one error shape: `{"error": {"code", "message"}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error answer. `code` is stable and machine-readable; `message` is a sentence for
/// people and may change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and message of an error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable and stable, e.g. `not_found`.
    #[schema(examples("not_found"))]
    pub code: String,
    /// A sentence for people.
    pub message: String,
}
