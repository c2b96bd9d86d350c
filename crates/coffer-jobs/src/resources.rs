//! Resources admins manage (registered repositories, database credentials): one generic piece
//! creates, changes, tests and deletes them and seals their secrets; each kind says how its
//! input is checked ([`Managed`]), in its own module.

use std::future::Future;

use coffer_db::Stored;
use coffer_types::Check;

use crate::{Jobs, Result};

/// How the job service checks and tests one kind of resource.
pub trait Managed: Stored {
    /// The resource `input` describes, with the id `id`, and its secret in clear.
    fn make(
        jobs: &Jobs,
        id: String,
        input: Self::Input,
    ) -> impl Future<Output = Result<(Self, Option<String>)>> + Send;

    /// `current` with the fields of `update`, and its new secret if one is given (empty:
    /// removed).
    fn change(
        jobs: &Jobs,
        current: Self,
        update: Self::Update,
    ) -> impl Future<Output = Result<(Self, Option<String>)>> + Send;

    /// Whether it works now, and what was found, or why not.
    fn test(jobs: &Jobs, it: Self) -> impl Future<Output = Result<Check>> + Send;
}

/// What a sealed secret is bound to: its kind and id, so sealed values cannot be swapped
/// between rows.
fn context<R: Managed>(id: &str) -> String {
    format!("{}:{id}", R::KIND)
}

impl Jobs {
    pub async fn resources<R: Managed>(&self) -> Result<Vec<R>> {
        Ok(self.db.resources().await?)
    }

    pub async fn resource<R: Managed>(&self, id: &str) -> Result<R> {
        Ok(self.db.resource(id).await?)
    }

    pub async fn create_resource<R: Managed>(&self, input: R::Input) -> Result<R> {
        let (it, secret) = R::make(self, coffer_db::new_id(), input).await?;
        let sealed = secret.map(|s| self.vault.seal(&s, &context::<R>(it.id())));
        Ok(self.db.create_resource(&it, sealed.as_deref()).await?)
    }

    pub async fn update_resource<R: Managed>(&self, id: &str, update: R::Update) -> Result<R> {
        let current = self.db.resource::<R>(id).await?;
        let (it, secret) = R::change(self, current, update).await?;
        let sealed =
            secret.map(|s| (!s.is_empty()).then(|| self.vault.seal(&s, &context::<R>(id))));
        Ok(self
            .db
            .update_resource(&it, sealed.as_ref().map(|s| s.as_deref()))
            .await?)
    }

    pub async fn test_resource<R: Managed>(&self, id: &str) -> Result<Check> {
        R::test(self, self.db.resource(id).await?).await
    }

    pub async fn delete_resource<R: Managed>(&self, id: &str) -> Result<()> {
        Ok(self.db.delete_resource::<R>(id).await?)
    }

    /// A resource's secret in clear, for a run.
    pub(crate) async fn secret<R: Managed>(&self, id: &str) -> Result<Option<String>> {
        match self.db.sealed_secret::<R>(id).await? {
            Some(sealed) => Ok(Some(self.vault.open(&sealed, &context::<R>(id))?)),
            None => Ok(None),
        }
    }
}
