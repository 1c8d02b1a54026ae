//! What a reload changes inside a unit: the parts added, changed, removed and kept.
//!
//! A unit made of named parts (an engine's modules and pipelines) can tell, once built, how it
//! differs from the unit it replaces, the way Vector's topology diff does. The protocol does not
//! interpret it; it records it with the reload ([`ReloadRecord::changes`](crate::ReloadRecord))
//! so that the outcome, status and history show what a reload touched.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

/// The parts of one kind (say, modules) that a reload adds, changes, removes and keeps, each
/// list sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartChanges {
    /// Parts the live unit does not have.
    pub added: Vec<String>,
    /// Parts the live unit has too but that are replaced: their spec (or a dependency's)
    /// differs, or the unit chose not to carry them over.
    pub changed: Vec<String>,
    /// Parts of the live unit the new one drops: stopped once the new unit serves.
    pub removed: Vec<String>,
    /// Parts that stay as they are (an engine carries such modules over without rebuilding or
    /// restarting them).
    pub kept: Vec<String>,
}

impl PartChanges {
    /// Sorts every list, so that the answer does not depend on the order parts were compared.
    pub fn sorted(mut self) -> Self {
        for list in [
            &mut self.added,
            &mut self.changed,
            &mut self.removed,
            &mut self.kept,
        ] {
            list.sort_unstable();
        }
        self
    }
}

/// The changes of a reload, by kind of part (`modules`, `pipelines`). Cheap to clone: a
/// reload's record is copied into history and status, and a large unit keeps many parts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Changes(Arc<BTreeMap<String, PartChanges>>);

impl Changes {
    /// The changes, by kind of part.
    pub fn new(parts: BTreeMap<String, PartChanges>) -> Self {
        Self(Arc::new(parts))
    }

    /// The changes to the parts of `kind`, if the unit has such parts.
    pub fn of(&self, kind: &str) -> Option<&PartChanges> {
        self.0.get(kind)
    }
}
