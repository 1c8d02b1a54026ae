//! Transactions: the steps of one pipeline run writing together, or not at all.
//!
//! A pipeline may name a module in `transaction:` (a `storage.sqlite` or `storage.postgres`
//! store, or a module type of your own). The module offers [`Transactions`] through
//! [`Module::transactions`](super::Module::transactions). For each run the engine begins one
//! [`Transaction`] before the first step and hands it to every step as
//! [`StepContext::transaction`](super::StepContext::transaction); a step that works on that
//! module does its work inside it. The engine commits when the steps succeed (a guard's answer,
//! such as a 400 from `step.validate`, counts as success), and rolls back when a step fails,
//! before any `onError:` steps run (they run outside it), and when the run passes the pipeline's
//! time limit. A commit that fails fails the run.

use std::any::Any;
use std::fmt;

use futures::future::BoxFuture;
use tokio::sync::{Mutex, MutexGuard};

use super::error::StepError;

/// What a module lends to the pipelines whose `transaction:` names it: a way to begin one.
pub trait Transactions: Send + Sync {
    /// Begins a transaction (taking a connection from the module's pool, for a store).
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Transaction>, StepError>>;
}

/// One open transaction. Dropping it without [`commit`](Transaction::commit) must roll it back.
pub trait Transaction: Send {
    /// Makes its work durable.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StepError>>;

    /// Undoes its work.
    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), StepError>>;

    /// The module's own transaction type, for its steps to downcast.
    fn as_any(&mut self) -> &mut (dyn Any + Send);
}

/// The transaction of one pipeline run, as its steps see it.
pub struct RunTransaction {
    module: String,
    open: Mutex<Option<Box<dyn Transaction>>>,
}

impl fmt::Debug for RunTransaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunTransaction")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl RunTransaction {
    /// A run's transaction on `module`, not begun yet.
    pub(crate) fn new(module: &str) -> Self {
        Self {
            module: module.to_owned(),
            open: Mutex::new(None),
        }
    }

    /// The module the transaction runs on: a step works inside it only if it works on that
    /// module.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The open transaction, held for one step's work: `None` before it began and after it
    /// ended.
    pub async fn lock(&self) -> MutexGuard<'_, Option<Box<dyn Transaction>>> {
        self.open.lock().await
    }

    /// Begins it through `transactions`.
    pub(crate) async fn begin(&self, transactions: &dyn Transactions) -> Result<(), StepError> {
        let begun = transactions.begin().await?;
        *self.open.lock().await = Some(begun);
        Ok(())
    }

    /// Takes it out, open, to commit or roll back: `None` if it never began or already ended.
    pub(crate) fn take(&self) -> Option<Box<dyn Transaction>> {
        // Steps hold the lock only while they run, and the engine takes it after they ended
        // (or were dropped at the time limit), so it is free here.
        self.open.try_lock().ok().and_then(|mut open| open.take())
    }
}
