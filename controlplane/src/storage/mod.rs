//! Object storage on etcd, the way kube-apiserver does it: one key per object under
//! `/registry/...`, JSON values, `resourceVersion` = the key's etcd `mod_revision`, optimistic
//! concurrency through etcd transactions, lists at one consistent revision with `limit`/`continue`,
//! and watches that resume from a revision (410 Gone once it is compacted).
//!
//! The store is untyped (`serde_json::Value`): typing and validation belong to the API layer, so
//! one store serves every resource.

mod continue_token;
pub mod mirror;

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use futures::{Stream, StreamExt as _};
use serde_json::Value;

pub use continue_token::ContinueToken;

/// Errors of the storage layer; the API layer maps each to a Kubernetes `Status`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The etcd member knows no leader: its cluster has no quorum (yet).
    #[error(
        "etcd elected no leader within {0:?}: fewer than half of its cluster's members run (are the other control planes started?)"
    )]
    NoLeader(Duration),
    /// No object at the key (404 NotFound).
    #[error("{key} not found")]
    NotFound {
        /// The etcd key.
        key: String,
    },
    /// An object exists at the key already (409 AlreadyExists).
    #[error("{key} already exists")]
    AlreadyExists {
        /// The etcd key.
        key: String,
    },
    /// The object changed since the caller read it (409 Conflict).
    #[error(
        "{key} was modified: the request was based on resourceVersion {expected}, the object is now at {actual}; read it again and retry"
    )]
    Conflict {
        /// The etcd key.
        key: String,
        /// The resourceVersion the caller based its change on.
        expected: i64,
        /// The object's current resourceVersion (0 if it was deleted).
        actual: i64,
    },
    /// The requested revision was compacted away (410 Expired / Gone).
    #[error("resourceVersion {requested} is too old: etcd compacted history up to {compacted}")]
    Expired {
        /// The revision asked for.
        requested: i64,
        /// The oldest revision still available (0 if unknown).
        compacted: i64,
    },
    /// A `continue` token that cannot be decoded (400 BadRequest).
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),
    /// A stored value is not valid JSON (500; never expected).
    #[error("{key} holds a value that is not a JSON object: {message}")]
    Corrupt {
        /// The etcd key.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// etcd could not be reached or failed (503/500).
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
}

/// An object as stored, with its resourceVersion filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The object, `metadata.resourceVersion` set to `revision`.
    pub object: Value,
    /// The etcd mod_revision of the key (the object's resourceVersion).
    pub revision: i64,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    /// Objects in key order.
    pub items: Vec<Stored>,
    /// The revision the whole list (all pages) is read at: the list's resourceVersion.
    pub revision: i64,
    /// Token for the next page, if there are more objects.
    pub continue_token: Option<String>,
    /// How many objects remain after this page (an estimate, like kube's remainingItemCount).
    pub remaining: Option<i64>,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// The object was created.
    Added(Stored),
    /// The object was updated.
    Modified {
        /// The new state.
        current: Stored,
        /// The state before (None if etcd no longer had it).
        previous: Option<Stored>,
    },
    /// The object was deleted; carries its last state, at the deletion's revision.
    Deleted(Stored),
    /// The watch has seen everything up to this revision (a bookmark).
    Progress(i64),
}

/// The etcd-backed store.
#[derive(Clone)]
pub struct Store {
    client: Client,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// How often a request that could not reach any etcd member is retried (connect errors only:
/// the request was never sent, so retrying cannot apply it twice).
const CONNECT_ATTEMPTS: usize = 20;
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Whether `err` says the request never left this process: the channel picked an endpoint that
/// refused the connection (e.g. a dead member of a 3-member cluster).
fn never_sent(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable
                && (status.message().contains("connect") || status.message().contains("transport"))
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// How many times `guaranteed_update` re-reads and retries after losing a race.
const MAX_UPDATE_ATTEMPTS: usize = 16;

impl Store {
    /// Connects to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`), retrying for up to
    /// `timeout` while etcd starts and until the member answering knows its cluster's leader:
    /// etcd answers a status without quorum, but serves nothing else (a member of several
    /// waits for its peers).
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Self, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let attempt = async {
                let mut client = Client::connect(endpoints, None).await?;
                let status = client.status().await?;
                Ok::<_, etcd_client::Error>((client, status.leader() != 0))
            }
            .await;
            match attempt {
                Ok((client, true)) => return Ok(Self { client }),
                Ok(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(StorageError::NoLeader(timeout));
                }
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err.into()),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The cluster ID and member ID of the etcd member this store talks to.
    pub async fn member_identity(&self) -> Result<(u64, u64), StorageError> {
        let status = self
            .retry(|mut client| async move { client.status().await })
            .await?;
        let header = status.header();
        Ok((
            header.map_or(0, |header| header.cluster_id()),
            header.map_or(0, |header| header.member_id()),
        ))
    }

    /// Runs `request`, retrying while etcd cannot be reached (bounded: about 2 s).
    async fn retry<T, F, Fut>(&self, mut request: F) -> Result<T, etcd_client::Error>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0;
        loop {
            match request(self.client.clone()).await {
                Err(err) if never_sent(&err) && attempt + 1 < CONNECT_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
                }
                result => return result,
            }
        }
    }

    /// The current etcd revision.
    pub async fn current_revision(&self) -> Result<i64, StorageError> {
        let response = self
            .retry(|mut client| async move { client.status().await })
            .await?;
        Ok(response.header().map_or(0, |header| header.revision()))
    }

    /// Creates the object at `key`; fails with AlreadyExists if there is one.
    pub async fn create(&self, key: &str, object: &Value) -> Result<Stored, StorageError> {
        let value = encode(object);
        let txn = Txn::new()
            .when([Compare::version(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, None)]);
        let response = self
            .retry(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        if !response.succeeded() {
            return Err(StorageError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = response.header().map_or(0, |header| header.revision());
        Ok(with_revision(object.clone(), revision))
    }

    /// Writes `object` at `key` unconditionally, to vanish `ttl` after this write unless
    /// written again (an etcd lease per write, as kube-apiserver's TTL keys): for records of
    /// live things, such as the API servers of the cluster (`masterleases`).
    pub async fn put_with_ttl(
        &self,
        key: &str,
        object: &Value,
        ttl: Duration,
    ) -> Result<(), StorageError> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let lease = self
            .retry(|mut client| async move { client.lease_grant(seconds, None).await })
            .await?;
        let value = encode(object);
        let options = PutOptions::new().with_lease(lease.id());
        self.retry(|mut client| {
            let (value, options) = (value.clone(), options.clone());
            async move { client.put(key, value, Some(options)).await }
        })
        .await?;
        Ok(())
    }

    /// Reads the object at `key` (a linearizable read: the latest write, wherever it was made).
    pub async fn get(&self, key: &str) -> Result<Stored, StorageError> {
        self.get_with(key, None).await
    }

    /// Reads the object at `key` as the etcd member this store talks to has it, without a round
    /// trip to the cluster's leader (a serializable read): it may lag the latest write, so it
    /// only suits a start that a compare-and-swap on its revision checks, as upstream's
    /// GuaranteedUpdate starts from its watch cache's copy.
    pub async fn get_local(&self, key: &str) -> Result<Stored, StorageError> {
        self.get_with(key, Some(GetOptions::new().with_serializable()))
            .await
    }

    async fn get_with(
        &self,
        key: &str,
        options: Option<GetOptions>,
    ) -> Result<Stored, StorageError> {
        let response = self
            .retry(|mut client| {
                let options = options.clone();
                async move { client.get(key, options).await }
            })
            .await?;
        let kv = response
            .kvs()
            .first()
            .ok_or_else(|| StorageError::NotFound {
                key: key.to_owned(),
            })?;
        decode(key, kv.value(), kv.mod_revision())
    }

    /// Replaces the object at `key` if its resourceVersion is still `expected_revision`.
    pub async fn update(
        &self,
        key: &str,
        object: &Value,
        expected_revision: i64,
    ) -> Result<Stored, StorageError> {
        let value = encode(object);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                expected_revision,
            )])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(key, None)]);
        let response = self
            .retry(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |header| header.revision());
            return Ok(with_revision(object.clone(), revision));
        }
        Err(lost_race(key, expected_revision, response.op_responses()))
    }

    /// Reads the object, applies `change`, and writes it back, retrying when another writer won
    /// the race. `change` returns `Ok(None)` to leave the object as it is.
    pub async fn guaranteed_update<F, E>(&self, key: &str, mut change: F) -> Result<Stored, E>
    where
        F: FnMut(Stored) -> Result<Option<Value>, E>,
        E: From<StorageError>,
    {
        let mut last_conflict = None;
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let current = self.get(key).await?;
            let revision = current.revision;
            let Some(updated) = change(current.clone())? else {
                return Ok(current);
            };
            match self.update(key, &updated, revision).await {
                Ok(stored) => return Ok(stored),
                Err(conflict @ StorageError::Conflict { .. }) => last_conflict = Some(conflict),
                Err(other) => return Err(other.into()),
            }
        }
        Err(last_conflict
            .unwrap_or(StorageError::NotFound {
                key: key.to_owned(),
            })
            .into())
    }

    /// Deletes the object at `key`, if `expected_revision` is given only when it is still at that
    /// revision. Returns the object's last state.
    pub async fn delete(
        &self,
        key: &str,
        expected_revision: Option<i64>,
    ) -> Result<Stored, StorageError> {
        let current = self.get(key).await?;
        let expected = expected_revision.unwrap_or(current.revision);
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::delete(key, None)])
            .or_else([TxnOp::get(key, None)]);
        let response = self
            .retry(|mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })
            .await?;
        if response.succeeded() {
            let revision = response.header().map_or(0, |header| header.revision());
            let mut last = current;
            last.revision = revision;
            last.object = with_revision(last.object, revision).object;
            return Ok(last);
        }
        Err(lost_race(key, expected, response.op_responses()))
    }

    /// Lists the objects under `prefix` (which must end in '/'), `limit` at a time (0 = all).
    /// A `continue_token` from an earlier page reads the next page at that page's revision.
    pub async fn list(
        &self,
        prefix: &str,
        limit: i64,
        continue_token: Option<&str>,
    ) -> Result<ListPage, StorageError> {
        let (start, revision) = match continue_token {
            Some(token) => {
                let token = ContinueToken::decode(token)?;
                if !token.start.starts_with(prefix) {
                    return Err(StorageError::InvalidContinue(
                        "the token belongs to another list".into(),
                    ));
                }
                (token.start, token.revision)
            }
            None => (prefix.to_owned(), 0),
        };
        let end = prefix_end(prefix);
        let mut options = GetOptions::new().with_range(end.clone());
        if revision > 0 {
            options = options.with_revision(revision);
        }
        if limit > 0 {
            options = options.with_limit(limit);
        }
        let response = self
            .retry(|mut client| {
                let options = options.clone();
                let start = start.clone();
                async move { client.get(start.as_bytes(), Some(options)).await }
            })
            .await
            .map_err(|err| compacted(err, revision))?;
        let read_at = if revision > 0 {
            revision
        } else {
            response.header().map_or(0, |header| header.revision())
        };
        let items = response
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                decode(&key, kv.value(), kv.mod_revision())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (continue_token, remaining) = if response.more() {
            let last_key = response
                .kvs()
                .last()
                .map(|kv| kv.key().to_vec())
                .unwrap_or_default();
            let mut next = last_key;
            next.push(0);
            let token = ContinueToken {
                revision: read_at,
                start: String::from_utf8_lossy(&next).into_owned(),
            };
            let remaining = response.count() - i64::try_from(items.len()).unwrap_or(i64::MAX);
            (Some(token.encode()), Some(remaining))
        } else {
            (None, None)
        };
        Ok(ListPage {
            items,
            revision: read_at,
            continue_token,
            remaining,
        })
    }

    /// Watches every key under `prefix` for changes after `after_revision` (0 = from now).
    /// Ends with `Expired` when that revision has been compacted.
    pub async fn watch(
        &self,
        prefix: &str,
        after_revision: i64,
    ) -> Result<
        impl Stream<Item = Result<WatchEvent, StorageError>> + Send + 'static + use<>,
        StorageError,
    > {
        let mut options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_prev_key()
            .with_progress_notify();
        if after_revision > 0 {
            options = options.with_start_revision(after_revision + 1);
        }
        let stream = self
            .retry(|mut client| {
                let options = options.clone();
                async move { client.watch(prefix, Some(options)).await }
            })
            .await?;
        let (sender, responses) = stream.split();
        let events = responses.flat_map(move |response| {
            // Keep the request half alive for as long as responses are read.
            let _sender = &sender;
            let batch: Vec<Result<WatchEvent, StorageError>> = match response {
                Err(err) => vec![Err(err.into())],
                Ok(response) if response.compact_revision() > 0 => {
                    vec![Err(StorageError::Expired {
                        requested: after_revision,
                        compacted: response.compact_revision(),
                    })]
                }
                Ok(response) if response.events().is_empty() && !response.created() => {
                    let revision = response.header().map_or(0, |header| header.revision());
                    vec![Ok(WatchEvent::Progress(revision))]
                }
                Ok(response) => response.events().iter().filter_map(convert_event).collect(),
            };
            futures::stream::iter(batch)
        });
        Ok(events)
    }

    /// Compacts etcd history up to `revision` (used by tests and by a periodic compactor).
    pub async fn compact(&self, revision: i64) -> Result<(), StorageError> {
        self.retry(|mut client| async move { client.compact(revision, None).await })
            .await?;
        Ok(())
    }
}

fn convert_event(event: &etcd_client::Event) -> Option<Result<WatchEvent, StorageError>> {
    let kv = event.kv()?;
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    Some(match event.event_type() {
        EventType::Put => decode(&key, kv.value(), kv.mod_revision()).map(|stored| {
            if kv.create_revision() == kv.mod_revision() {
                WatchEvent::Added(stored)
            } else {
                let previous = event.prev_kv().and_then(|previous| {
                    decode(&key, previous.value(), previous.mod_revision()).ok()
                });
                WatchEvent::Modified {
                    current: stored,
                    previous,
                }
            }
        }),
        EventType::Delete => {
            // The deletion carries no value; the previous one does (with_prev_key).
            match event.prev_kv() {
                Some(previous) => {
                    decode(&key, previous.value(), kv.mod_revision()).map(WatchEvent::Deleted)
                }
                None => Err(StorageError::Corrupt {
                    key,
                    message: "delete event without the previous value".into(),
                }),
            }
        }
    })
}

fn compacted(err: etcd_client::Error, requested: i64) -> StorageError {
    match &err {
        etcd_client::Error::GRpcStatus(status) if status.message().contains("compacted") => {
            StorageError::Expired {
                requested,
                compacted: 0,
            }
        }
        _ => err.into(),
    }
}

/// The error for a compare-and-swap that failed: the key is gone (NotFound) or was changed by
/// someone else (Conflict). `responses` are the txn's else-branch reads of the key.
fn lost_race(key: &str, expected: i64, responses: Vec<TxnOpResponse>) -> StorageError {
    let actual = current_mod_revision(responses);
    if actual == 0 {
        StorageError::NotFound {
            key: key.to_owned(),
        }
    } else {
        StorageError::Conflict {
            key: key.to_owned(),
            expected,
            actual,
        }
    }
}

fn current_mod_revision(responses: Vec<TxnOpResponse>) -> i64 {
    responses
        .into_iter()
        .find_map(|response| match response {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map_or(0, |kv| kv.mod_revision())),
            _ => None,
        })
        .unwrap_or(0)
}

/// The end of the key range covering every key that starts with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Stored values never carry a resourceVersion: the key's mod_revision is the truth.
fn encode(object: &Value) -> Vec<u8> {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    object.to_string().into_bytes()
}

fn decode(key: &str, bytes: &[u8], revision: i64) -> Result<Stored, StorageError> {
    let object: Value = serde_json::from_slice(bytes).map_err(|err| StorageError::Corrupt {
        key: key.to_owned(),
        message: err.to_string(),
    })?;
    if !object.is_object() {
        return Err(StorageError::Corrupt {
            key: key.to_owned(),
            message: "not a JSON object".into(),
        });
    }
    Ok(with_revision(object, revision))
}

fn with_revision(mut object: Value, revision: i64) -> Stored {
    if let Some(map) = object.as_object_mut() {
        let metadata = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert(
                "resourceVersion".into(),
                Value::String(revision.to_string()),
            );
        }
    }
    Stored { object, revision }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn resource_version_is_never_stored_and_always_returned() {
        let object = json!({"metadata": {"name": "x", "resourceVersion": "5"}});
        let bytes = encode(&object);
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let stored = decode("k", &bytes, 42).unwrap();
        assert_eq!(stored.object["metadata"]["resourceVersion"], "42");
        assert_eq!(stored.revision, 42);
    }

    #[test]
    fn non_objects_are_reported_as_corrupt() {
        assert!(matches!(
            decode("k", b"[1]", 1),
            Err(StorageError::Corrupt { .. })
        ));
        assert!(matches!(
            decode("k", b"{", 1),
            Err(StorageError::Corrupt { .. })
        ));
    }
}
