//! How a slot replaces its live child.

use std::fmt;

/// The order in which a slot starts the new child and stops the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwapMode {
    /// Make before break: start the new child while the old one serves, then drain and stop the
    /// old one. A failed start never touches the old child. The default.
    #[default]
    StartFirst,
    /// Break before make: drain and stop the old child, then start the new one, restoring the
    /// old child if the new one fails. For units holding a resource that cannot be shared.
    StopFirst,
}

impl SwapMode {
    /// The name used in configs and status: `start-first` or `stop-first`.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapMode::StartFirst => "start-first",
            SwapMode::StopFirst => "stop-first",
        }
    }
}

impl fmt::Display for SwapMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
