//! [`Link`]: a handle on a Redis server, or on the master a set of Sentinels names; and [`LinkConnection`],
//! what commands are sent through.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::classify::{certainly_not_run, is_link_failure, master_may_have_moved};
use crate::sentinel::{Master, SentinelRoute};
use crate::url::{SENTINEL_SCHEME, parse_sentinel_url};
use crate::{LinkError, LinkKind, LinkStatus};

/// A link to Redis, cheap to clone (clones share the connection). Opening one does not connect: the server
/// (or the Sentinels) are first reached by the first command, so a server that is down now only fails
/// commands until it is back. Must be opened inside a tokio runtime, which then drives the connections.
#[derive(Clone)]
pub struct Link {
    shared: Arc<Shared>,
}

struct Shared {
    route: Route,
    /// The database commands run in.
    db: i64,
    /// Why the last command failed to reach the master, while it is so.
    last_error: Mutex<Option<String>>,
    /// Whether `last_error` is set: read on every success, so that a success does not take the lock.
    failing: AtomicBool,
    /// The task listening to the Sentinels' failover announcements, stopped with the last clone.
    switch_watch: Option<tokio::task::AbortHandle>,
}

enum Route {
    /// One server, always the same.
    Plain(Arc<Master>),
    /// Whichever master the Sentinels name.
    Sentinel(Arc<SentinelRoute>),
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = &self.switch_watch {
            task.abort();
        }
    }
}

impl Link {
    /// A link to the server `redis://HOST:PORT/DB` names, or to the master
    /// `redis+sentinel://HOST:PORT,.../MASTER[/DB]` names, whose commands use `config`'s timeouts and
    /// reconnection delays. Fails only for a malformed URL.
    pub fn open(url: &str, config: ConnectionManagerConfig) -> Result<Link, LinkError> {
        let redis_error = |source| LinkError::Redis { url: url.to_string(), source };
        let (route, db, switch_watch) = if url.starts_with(SENTINEL_SCHEME) {
            let parsed = parse_sentinel_url(url)?;
            let route = Arc::new(SentinelRoute::new(&parsed, config).map_err(redis_error)?);
            let watch = crate::switch_watch::spawn(parsed.sentinels.clone(), Arc::downgrade(&route));
            (Route::Sentinel(route), parsed.db, watch)
        } else {
            if !url.contains("://") {
                return Err(LinkError::Scheme(url.to_string()));
            }
            let client = redis::Client::open(url).map_err(redis_error)?;
            let address = client.get_connection_info().addr().to_string();
            let db = client.get_connection_info().redis_settings().db();
            let manager = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(redis_error)?;
            (Route::Plain(Arc::new(Master { address, client, manager, generation: 0 })), db, None)
        };
        let shared = Shared { route, db, last_error: Mutex::new(None), failing: AtomicBool::new(false), switch_watch };
        Ok(Link { shared: Arc::new(shared) })
    }

    /// A connection to pass to `query_async` and `invoke_async`: each command goes to the current master.
    pub fn connection(&self) -> LinkConnection {
        LinkConnection { link: self.clone() }
    }

    /// A pub/sub connection of its own to the current master. Subscribers should subscribe again through a
    /// new one when its messages end: after a failover, that is the new master.
    pub async fn pubsub(&self) -> RedisResult<PubSub> {
        let master = self.master().await?;
        let subscribed = master.client.get_async_pubsub().await;
        if let Err(e) = &subscribed {
            self.failed(e, master.generation);
        }
        subscribed
    }

    /// Told when the master moves from now on (never, for a plain link): a subscriber listening on the old
    /// master, which may live on as a replica, should then subscribe again through [`Link::pubsub`].
    pub fn master_moves(&self) -> MasterMoves {
        match &self.shared.route {
            Route::Plain(_) => MasterMoves { moves: None },
            Route::Sentinel(route) => MasterMoves { moves: Some(route.moves()) },
        }
    }

    /// Which kind of link this is, the master in use, the failovers seen and the last failure.
    pub fn status(&self) -> LinkStatus {
        let last_error = if self.shared.failing.load(Ordering::Relaxed) {
            self.shared.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
        } else {
            None
        };
        match &self.shared.route {
            Route::Plain(master) => LinkStatus {
                kind: LinkKind::Plain,
                master_name: None,
                master: Some(master.address.clone()),
                failovers: 0,
                last_error,
            },
            Route::Sentinel(route) => {
                let (master, failovers) = route.seen();
                LinkStatus {
                    kind: LinkKind::Sentinel,
                    master_name: Some(route.master_name().to_string()),
                    master,
                    failovers,
                    last_error,
                }
            }
        }
    }

    /// The master to send the next command to.
    async fn master(&self) -> RedisResult<Arc<Master>> {
        let found = match &self.shared.route {
            Route::Plain(master) => Ok(master.clone()),
            Route::Sentinel(route) => route.master().await,
        };
        if let Err(e) = &found {
            self.remember(Some(e));
        }
        found
    }

    /// Runs `send` on the current master. When it fails because the master moved, the Sentinels are asked
    /// again; if the command certainly did not run and they name another master, it is sent there once.
    async fn send<T, F, R>(&self, send: F) -> RedisResult<T>
    where
        F: Fn(ConnectionManager) -> R,
        R: Future<Output = RedisResult<T>>,
    {
        let master = self.master().await?;
        let error = match send(master.manager.clone()).await {
            Ok(value) => return Ok(self.succeeded(value)),
            Err(e) => e,
        };
        if !self.failed(&error, master.generation) || !certainly_not_run(&error) {
            return Err(error);
        }
        let Ok(next) = self.master().await else { return Err(error) };
        if next.generation == master.generation {
            return Err(error);
        }
        match send(next.manager.clone()).await {
            Ok(value) => Ok(self.succeeded(value)),
            Err(e) => {
                self.failed(&e, next.generation);
                Err(e)
            }
        }
    }

    fn succeeded<T>(&self, value: T) -> T {
        if self.shared.failing.load(Ordering::Relaxed) {
            self.remember(None);
        }
        value
    }

    /// Notes a failed command on master `generation`; whether it may be because the master moved (a Sentinel
    /// link then asks the Sentinels again before the next command).
    fn failed(&self, e: &RedisError, generation: u64) -> bool {
        self.remember(Some(e));
        let moved = master_may_have_moved(e);
        if let (true, Route::Sentinel(route)) = (moved, &self.shared.route) {
            route.suspect(generation);
            return true;
        }
        false
    }

    /// Keeps `e` as the last error if it is about reaching the server; an error of the command's own (a
    /// script's refusal, say) shows the server answers, so it clears it like a success.
    fn remember(&self, e: Option<&RedisError>) {
        let text = e.filter(|e| is_link_failure(e)).map(ToString::to_string);
        let mut last = self.shared.last_error.lock().unwrap_or_else(PoisonError::into_inner);
        self.shared.failing.store(text.is_some(), Ordering::Relaxed);
        *last = text;
    }
}

/// Moves of a link's master, from [`Link::master_moves`].
pub struct MasterMoves {
    moves: Option<tokio::sync::watch::Receiver<u64>>,
}

impl MasterMoves {
    /// Returns at the master's next move (a move since this was made counts): never for a plain link.
    pub async fn moved(&mut self) {
        if let Some(moves) = &mut self.moves
            && moves.changed().await.is_ok()
        {
            return;
        }
        // A plain link's master never moves; a Sentinel link's only while the link lives.
        std::future::pending().await
    }
}

/// Sends each command through its [`Link`] to the master in use. Cheap to create and clone.
#[derive(Clone)]
pub struct LinkConnection {
    link: Link,
}

impl ConnectionLike for LinkConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.link.send(move |mut manager| async move { manager.req_packed_command(cmd).await }))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(
            self.link
                .send(move |mut manager| async move { manager.req_packed_commands(pipeline, offset, count).await }),
        )
    }

    fn get_db(&self) -> i64 {
        self.link.shared.db
    }
}
