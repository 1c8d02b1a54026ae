//! The schemas of the status types whose JSON is written by hand (`ReloadRecord`,
//! `StageTimings`, `Changes`), for an OpenAPI document (feature `openapi`).
//!
//! Their `Serialize` impls flatten an enum into a map, which no derive can describe; each is
//! described here by a private shape of what it writes, next to nothing else, and the admin
//! API's tests validate real records against the document.

use std::borrow::Cow;
use std::collections::BTreeMap;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{PartialSchema, ToSchema};

use crate::{Changes, Origin, PartChanges, ReloadRecord, Stage, StageTimings};

/// What `ReloadRecord` writes.
#[derive(ToSchema)]
#[schema(as = ReloadRecord)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // a shape: read by the schema derive only
struct RecordShape {
    /// Sequence number of the request within this runtime.
    id: u64,
    /// Who asked.
    origin: Origin,
    /// What became of it: `activated`, `rejected`, `rolled_back`, `degraded`, `superseded`,
    /// `reverted`, `restored`, `conflict` or `unchanged`.
    #[schema(
        pattern = "^(activated|rejected|rolled_back|degraded|superseded|reverted|restored|conflict|unchanged)$"
    )]
    outcome: String,
    /// The stage that refused it (`rejected` only).
    stage: Option<Stage>,
    /// Why it did not activate.
    error: Option<String>,
    /// Why the restore failed too (`degraded` only).
    restore_error: Option<String>,
    /// The generation an `If-Match` expected (`conflict` only).
    expected_generation: Option<u64>,
    /// The generation after it.
    generation: u64,
    /// The candidate's config hash, when it was built.
    fingerprint: Option<String>,
    /// What the candidate changes, by kind of part.
    changes: Option<BTreeMap<String, PartChanges>>,
    /// When it was taken up, in milliseconds since the Unix epoch.
    started_at_ms: u64,
    /// How long each stage took, in milliseconds.
    durations_ms: StageTimings,
}

/// What `StageTimings` writes: only the stages that ran.
#[derive(ToSchema)]
#[schema(as = StageTimings)]
#[allow(dead_code)] // a shape: read by the schema derive only
struct TimingsShape {
    build: Option<f64>,
    start: Option<f64>,
    drain: Option<f64>,
    stop: Option<f64>,
    rollback: Option<f64>,
    total: Option<f64>,
}

/// Implements `PartialSchema` and `ToSchema` for `$public` as the schema of `$shape`.
macro_rules! described_by {
    ($public:ty, $shape:ty, $name:literal) => {
        impl PartialSchema for $public {
            fn schema() -> RefOr<Schema> {
                <$shape>::schema()
            }
        }

        impl ToSchema for $public {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }

            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                <$shape>::schemas(schemas);
            }
        }
    };
}

described_by!(ReloadRecord, RecordShape, "ReloadRecord");
described_by!(StageTimings, TimingsShape, "StageTimings");
described_by!(Changes, BTreeMap<String, PartChanges>, "Changes");
