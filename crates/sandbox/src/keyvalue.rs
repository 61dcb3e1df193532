//! `wasi:keyvalue` (store, atomics, batch; the draft wasmtime 48 ships) for components, on the tenant's
//! [`KvStore`]. A guest names buckets; the tenant is the host's: `open("default")` in alice's guest and in
//! bob's are different data. Every failure is the WASI `error` value (`other` with a reason), never a trap:
//! over quota, an invalid name, a counter that is not one, the store unreachable.

use std::sync::Arc;

use palisade_kv::{KvError, KvStore, Quota, Scope};
use wasmtime::component::{HasData, Resource, ResourceTable};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};

/// An open bucket: one of the tenant's scopes. (`pub` because the generated bindings re-export it.)
#[allow(unreachable_pub, reason = "the generated bindings re-export the resource type")]
pub struct Bucket {
    scope: Scope,
}

/// What a component's key-value calls reach: the shared store, as this tenant, within its quota.
#[derive(Clone)]
pub(crate) struct KvCtx {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) tenant: Arc<str>,
    pub(crate) quota: Quota,
}

/// The borrowed parts of a component's state the key-value host uses.
pub(crate) struct KvView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) ctx: Option<&'a KvCtx>,
}

/// [`HasData`] marker for [`KvView`].
pub(crate) struct HasKv;

impl std::fmt::Debug for KvCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCtx").field("tenant", &self.tenant).field("quota", &self.quota).finish_non_exhaustive()
    }
}

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

/// Adds the three interfaces to `linker`; `view` picks the parts of the state they use.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(linker, view)?;
    atomics::add_to_linker::<T, HasKv>(linker, view)?;
    batch::add_to_linker::<T, HasKv>(linker, view)?;
    Ok(())
}

type KvResult<T> = wasmtime::Result<Result<T, store::Error>>;

fn guest_error(e: KvError) -> store::Error {
    if let KvError::Unavailable(detail) = &e {
        tracing::warn!("key-value store unavailable: {detail}");
        return store::Error::Other("storage unavailable".into());
    }
    store::Error::Other(e.to_string())
}

impl KvCtx {
    /// Counts one operation in `palisade_kv_operations_total` and turns its error into the guest's.
    fn counted<T>(&self, op: &'static str, result: Result<T, KvError>) -> Result<T, store::Error> {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("palisade_kv_operations_total", "tenant" => self.tenant.clone(), "op" => op, "result" => outcome)
            .increment(1);
        result.map_err(guest_error)
    }
}

impl KvView<'_> {
    /// An open bucket's scope, and the store it lives in. `open` only makes buckets when there is a store.
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<(Scope, &KvCtx)> {
        let scope = self.table.get(bucket)?.scope.clone();
        let ctx = self.ctx.ok_or_else(|| wasmtime::format_err!("a bucket without a key-value store"))?;
        Ok((scope, ctx))
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<Bucket>> {
        let Some(ctx) = self.ctx else { return Ok(Err(store::Error::NoSuchStore)) };
        match Scope::new(&ctx.tenant, &identifier) {
            Ok(scope) => Ok(Ok(self.table.push(Bucket { scope })?)),
            Err(e) => Ok(Err(guest_error(e))),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        let (scope, ctx) = self.bucket(&bucket)?;
        Ok(ctx.counted("get", ctx.store.get(&scope, &key).await))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        let (scope, ctx) = self.bucket(&bucket)?;
        Ok(ctx.counted("set", ctx.store.set(&scope, &key, &value, &ctx.quota).await))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<()> {
        let (scope, ctx) = self.bucket(&bucket)?;
        Ok(ctx.counted("delete", ctx.store.delete(&scope, &key).await))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> KvResult<bool> {
        let (scope, ctx) = self.bucket(&bucket)?;
        Ok(ctx.counted("exists", ctx.store.exists(&scope, &key).await))
    }

    async fn list_keys(&mut self, bucket: Resource<Bucket>, cursor: Option<u64>) -> KvResult<store::KeyResponse> {
        let (scope, ctx) = self.bucket(&bucket)?;
        let page = ctx.counted("list_keys", ctx.store.list_keys(&scope, cursor.unwrap_or(0)).await);
        Ok(page.map(|p| store::KeyResponse { keys: p.keys, cursor: p.cursor }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(&mut self, bucket: Resource<Bucket>, key: String, delta: u64) -> KvResult<u64> {
        let (scope, ctx) = self.bucket(&bucket)?;
        Ok(ctx.counted("increment", ctx.store.increment(&scope, &key, delta, &ctx.quota).await))
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<Option<(String, Vec<u8>)>>> {
        let (scope, ctx) = self.bucket(&bucket)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match ctx.counted("get", ctx.store.get(&scope, &key).await) {
                Ok(value) => out.push(value.map(|v| (key, v))),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(out))
    }

    async fn set_many(&mut self, bucket: Resource<Bucket>, key_values: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        let (scope, ctx) = self.bucket(&bucket)?;
        for (key, value) in key_values {
            if let Err(e) = ctx.counted("set", ctx.store.set(&scope, &key, &value, &ctx.quota).await) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> KvResult<()> {
        let (scope, ctx) = self.bucket(&bucket)?;
        for key in keys {
            if let Err(e) = ctx.counted("delete", ctx.store.delete(&scope, &key).await) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }
}
