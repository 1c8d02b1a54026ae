//! What a fake unit is built from: a [`Script`] saying what each step of its life does.

use std::time::Duration;

use swapvisor_actors::SwapMode;

/// What one step of a unit's life does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Act {
    /// It works.
    #[default]
    Succeed,
    /// It returns an error.
    Fail,
    /// It panics.
    Panic,
    /// It never finishes.
    Hang,
    /// It waits until the test opens the step's gate, then works.
    Wait,
}

/// A unit's spec: its version and what it does.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    pub version: String,
    pub build: Act,
    pub start: Act,
    pub stop: Act,
    /// What its state export does (when a successor takes its state).
    pub export: Act,
    /// What its import of a predecessor's state does.
    pub import: Act,
    pub mode: SwapMode,
    pub probation: Option<Duration>,
    /// The build, start, stop and drain timeouts.
    pub timeout: Duration,
    /// Hand the predecessor's journal of served calls to the successor.
    pub hands_over: bool,
}

impl Script {
    /// Version `version`, doing everything right, swapped start-first.
    pub(crate) fn new(version: &str) -> Self {
        Self {
            version: version.to_owned(),
            build: Act::Succeed,
            start: Act::Succeed,
            stop: Act::Succeed,
            export: Act::Succeed,
            import: Act::Succeed,
            mode: SwapMode::StartFirst,
            probation: None,
            timeout: Duration::from_secs(5),
            hands_over: false,
        }
    }

    pub(crate) fn stop_first(mut self) -> Self {
        self.mode = SwapMode::StopFirst;
        self
    }

    pub(crate) fn build(mut self, act: Act) -> Self {
        self.build = act;
        self
    }

    pub(crate) fn start(mut self, act: Act) -> Self {
        self.start = act;
        self
    }

    pub(crate) fn export(mut self, act: Act) -> Self {
        self.export = act;
        self
    }

    pub(crate) fn import(mut self, act: Act) -> Self {
        self.import = act;
        self
    }

    pub(crate) fn probation(mut self, window: Duration) -> Self {
        self.probation = Some(window);
        self
    }

    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub(crate) fn handing_over(mut self) -> Self {
        self.hands_over = true;
        self
    }
}
