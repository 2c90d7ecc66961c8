//! The templates in use, reloaded when an administrator saves one: fan-outs take a
//! snapshot, so a broadcast is worded by one set of versions from start to end.

use std::sync::{Arc, RwLock};

use chrono::Utc;

use super::{shipped_defaults, MessageTemplates, RenderBudget, RenderError};
use crate::store::{StoreError, TemplateStore};

/// Why templates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The shipped wording is broken (a build problem).
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The current compiled templates, swapped whole on every change.
pub struct TemplateRegistry {
    current: RwLock<Arc<MessageTemplates>>,
    budget: RenderBudget,
}

impl TemplateRegistry {
    /// Seeds the shipped defaults that the store lacks, then compiles the versions in use.
    pub async fn load(store: &dyn TemplateStore) -> Result<Self, LoadError> {
        Self::load_within(store, RenderBudget::default()).await
    }

    /// [`load`](Self::load), rendering every part within `budget`.
    pub async fn load_within(
        store: &dyn TemplateStore,
        budget: RenderBudget,
    ) -> Result<Self, LoadError> {
        let added = store
            .seed_templates(&shipped_defaults()?, Utc::now())
            .await?;
        if added > 0 {
            tracing::info!(added, "loaded the shipped message templates");
        }
        let mut registry = Self::fixed(MessageTemplates::builtin()?.with_budget(budget));
        registry.budget = budget;
        registry.reload(store).await?;
        Ok(registry)
    }

    /// A registry that only ever holds `templates` (tests and benchmarks).
    pub fn fixed(templates: MessageTemplates) -> Self {
        Self {
            budget: templates.budget(),
            current: RwLock::new(Arc::new(templates)),
        }
    }

    /// The limits every part is rendered within.
    pub fn budget(&self) -> RenderBudget {
        self.budget
    }

    /// The templates in use now.
    pub fn snapshot(&self) -> Arc<MessageTemplates> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Recompiles from the store (after a save or a rollback). Generic (and `?Sized`) so
    /// that the template editor, generic over its store, can pass its own.
    pub async fn reload<S>(&self, store: &S) -> Result<(), StoreError>
    where
        S: TemplateStore + ?Sized,
    {
        let versions = store.current_templates().await?;
        let (templates, broken) = MessageTemplates::compile(&versions);
        let templates = templates.with_budget(self.budget);
        for e in broken {
            tracing::error!(error = %e, "a stored template does not compile; its default is used");
        }
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(templates),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(templates),
        }
        Ok(())
    }
}
