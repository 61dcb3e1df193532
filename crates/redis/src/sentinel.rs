//! A Sentinel link's view of where the master is: asks the Sentinels when there is no master yet or the one
//! in use is suspected to have moved, at most every [`MIN_LOOKUP_INTERVAL`], and builds a connection to the
//! master they name.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Client, RedisError, RedisResult};

use crate::url::SentinelUrl;

/// The shortest time between two lookups: while the master is down and no Sentinel names another yet, every
/// failing command would otherwise ask the Sentinels again.
const MIN_LOOKUP_INTERVAL: Duration = Duration::from_millis(250);

/// The longest one lookup may take (each Sentinel's connection and answer also have their own, shorter,
/// limits in the redis client): callers waiting for it are held that long at most.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A server commands are sent to, and its connection.
pub(crate) struct Master {
    /// `HOST:PORT`.
    pub(crate) address: String,
    /// For connections of its own (pub/sub).
    pub(crate) client: Client,
    /// Shared by every command to this master; reconnects by itself.
    pub(crate) manager: ConnectionManager,
    /// Which master this is for the link: a new number each time the Sentinels name a different one, so that
    /// a failure seen on an older master does not cast doubt on a newer one.
    pub(crate) generation: u64,
}

/// What is known now.
#[derive(Default)]
struct Current {
    master: Option<Arc<Master>>,
    /// The master in use may have moved: ask the Sentinels before the next command.
    suspect: bool,
    last_lookup: Option<Instant>,
    /// Why the last lookup failed, if it did, for callers held off by [`MIN_LOOKUP_INTERVAL`].
    lookup_error: Option<RedisError>,
    failovers: u64,
}

/// The master a set of Sentinels names, followed.
pub(crate) struct SentinelRoute {
    master_name: String,
    node: SentinelNodeConnectionInfo,
    config: ConnectionManagerConfig,
    /// The Sentinels' client; one lookup at a time, so that callers arriving together share one.
    sentinels: tokio::sync::Mutex<Sentinel>,
    current: Mutex<Current>,
    /// Bumped when the master moves (a lookup names another, or a Sentinel announces a failover), for
    /// subscribers whose connection to the old master may stay open.
    moves: tokio::sync::watch::Sender<u64>,
}

impl SentinelRoute {
    /// A route to the master `url` names, asked for at the first command.
    pub(crate) fn new(url: &SentinelUrl, config: ConnectionManagerConfig) -> RedisResult<SentinelRoute> {
        let sentinels = Sentinel::build(url.sentinels.clone())?;
        let redis = redis::RedisConnectionInfo::default().set_db(url.db);
        Ok(SentinelRoute {
            master_name: url.master_name.clone(),
            node: SentinelNodeConnectionInfo::default().set_redis_connection_info(redis),
            config,
            sentinels: tokio::sync::Mutex::new(sentinels),
            current: Mutex::new(Current::default()),
            moves: tokio::sync::watch::Sender::new(0),
        })
    }

    fn current(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The master to send a command to: the one in use unless it is suspect (or there is none), else the one
    /// the Sentinels name now.
    pub(crate) async fn master(&self) -> RedisResult<Arc<Master>> {
        if let Some(master) = self.usable() {
            return Ok(master);
        }
        let mut sentinels = self.sentinels.lock().await;
        // Another caller may have looked the master up while this one waited.
        {
            let current = self.current();
            let recent = current.last_lookup.is_some_and(|at| at.elapsed() < MIN_LOOKUP_INTERVAL);
            match (&current.master, current.suspect, recent) {
                (Some(master), false, _) | (Some(master), true, true) => return Ok(master.clone()),
                (None, _, true) => {
                    if let Some(error) = &current.lookup_error {
                        return Err(error.clone());
                    }
                }
                _ => {}
            }
        }
        let found =
            tokio::time::timeout(LOOKUP_TIMEOUT, sentinels.async_master_for(&self.master_name, Some(&self.node)))
                .await
                .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()));
        drop(sentinels);
        let mut current = self.current();
        current.last_lookup = Some(Instant::now());
        let client = match found {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!("redis: asking the Sentinels for master {}: {e}", self.master_name);
                current.lookup_error = Some(e.clone());
                return match &current.master {
                    // The master in use may only have had a hiccup: try it rather than failing outright.
                    Some(master) => Ok(master.clone()),
                    None => Err(e),
                };
            }
        };
        current.lookup_error = None;
        current.suspect = false;
        let address = client.get_connection_info().addr().to_string();
        if let Some(master) = current.master.as_ref().filter(|m| m.address == address) {
            return Ok(master.clone());
        }
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), self.config.clone())?;
        let previous = current.master.as_ref().map(|m| (m.address.clone(), m.generation));
        let generation = previous.as_ref().map_or(1, |(_, generation)| generation + 1);
        match &previous {
            Some((was, _)) => {
                current.failovers += 1;
                metrics::counter!("palisade_redis_failovers_total", "master" => self.master_name.clone()).increment(1);
                tracing::info!("redis: master for {} is now {address} (was {was})", self.master_name);
                self.moves.send_modify(|moves| *moves += 1);
            }
            None => tracing::info!("redis: master for {} is {address}", self.master_name),
        }
        let master = Arc::new(Master { address, client, manager, generation });
        current.master = Some(master.clone());
        Ok(master)
    }

    /// The master in use, if there is one and it is not suspect.
    fn usable(&self) -> Option<Arc<Master>> {
        let current = self.current();
        current.master.as_ref().filter(|_| !current.suspect).cloned()
    }

    /// A command on master `generation` failed in a way that means the master may have moved: the next
    /// command asks the Sentinels first (unless a newer master is already in use).
    pub(crate) fn suspect(&self, generation: u64) {
        let mut current = self.current();
        if current.master.as_ref().is_some_and(|m| m.generation == generation) {
            current.suspect = true;
        }
    }

    /// A Sentinel announced that the master moved: the next command asks them, however recent the last
    /// lookup.
    pub(crate) fn switched(&self) {
        let mut current = self.current();
        current.suspect = true;
        current.last_lookup = None;
        self.moves.send_modify(|moves| *moves += 1);
    }

    /// Told of each move of the master from now on.
    pub(crate) fn moves(&self) -> tokio::sync::watch::Receiver<u64> {
        self.moves.subscribe()
    }

    /// The name the master is monitored under.
    pub(crate) fn master_name(&self) -> &str {
        &self.master_name
    }

    /// The master's address in use (if one was named yet), and how many times the Sentinels named another.
    pub(crate) fn seen(&self) -> (Option<String>, u64) {
        let current = self.current();
        (current.master.as_ref().map(|m| m.address.clone()), current.failovers)
    }
}
