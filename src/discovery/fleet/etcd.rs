//! The etcd v3 calls the fleet makes, over gRPC with tonic: a range read,
//! a transaction, a delete and a watch, on one HTTP/2 channel balanced
//! over the endpoints.
//!
//! The messages are etcd's own (`etcdserverpb/rpc.proto` and
//! `mvccpb/kv.proto`, API v3.4+), declared here with prost's derives for
//! the fields the fleet uses, with etcd's field numbers; the fields left
//! out are skipped when decoding, as protobuf does with any unknown field.
//! Declaring them beats generating them: generating needs `protoc` at
//! build time, which a fresh machine does not have.

use std::time::Duration;

use futures_util::StreamExt as _;
use http::uri::PathAndQuery;
use tonic::client::Grpc;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

/// An etcd client: cheap to clone (one shared channel).
#[derive(Clone)]
pub struct Client {
    grpc: Grpc<Channel>,
}

/// How the client talks to etcd.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long one call may take to be answered (a watch: to start).
    pub timeout: Duration,
    /// How long connecting to an endpoint may take.
    pub connect_timeout: Duration,
    /// HTTP/2 pings on an idle connection, and how long an answer may
    /// take: a dead connection (a watch's too) is found within their sum.
    pub keep_alive: (Duration, Duration),
}

/// Why an etcd call failed.
#[derive(Debug)]
pub enum Error {
    /// A bad endpoint address (found before any call).
    Endpoint(String, tonic::transport::Error),
    /// etcd's answer (or tonic's, for a connection that failed): a gRPC
    /// status.
    Status(tonic::Status),
    /// The channel could not be used.
    Transport(tonic::transport::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Endpoint(endpoint, e) => write!(f, "bad etcd endpoint {endpoint}: {e}"),
            Error::Status(status) if status.message().is_empty() => {
                f.write_str(&status.code().to_string().to_lowercase())
            }
            Error::Status(status) => f.write_str(status.message()),
            Error::Transport(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Endpoint(..) => None,
            Error::Status(status) => std::error::Error::source(status),
            Error::Transport(e) => std::error::Error::source(e),
        }
    }
}

impl Client {
    /// A client of `endpoints` (`http://host:port`), connected lazily:
    /// this never waits for etcd. Every call asks for a member with a
    /// leader (etcd's `hasleader`): a partitioned member's data may be
    /// stale.
    pub fn new(endpoints: &[String], options: Options) -> Result<Client, Error> {
        let endpoints = endpoints
            .iter()
            .map(|url| {
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| Error::Endpoint(url.clone(), e))?;
                Ok(endpoint
                    .timeout(options.timeout)
                    .connect_timeout(options.connect_timeout)
                    .http2_keep_alive_interval(options.keep_alive.0)
                    .keep_alive_timeout(options.keep_alive.1)
                    .keep_alive_while_idle(true))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let channel = Channel::balance_list(endpoints.into_iter());
        Ok(Client {
            grpc: Grpc::new(channel),
        })
    }

    /// One unary call of `path` with `message`.
    async fn unary<Q, A>(&mut self, path: &'static str, message: Q) -> Result<A, Error>
    where
        Q: prost::Message + Send + Sync + 'static,
        A: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc.ready().await.map_err(Error::Transport)?;
        let codec = ProstCodec::<Q, A>::default();
        let answer = self
            .grpc
            .unary(with_leader(message), PathAndQuery::from_static(path), codec)
            .await
            .map_err(Error::Status)?;
        Ok(answer.into_inner())
    }

    /// The keys under `prefix` (all of them when `prefix` is true, else
    /// the one key `key`), at the latest revision.
    pub async fn range(&mut self, key: Vec<u8>, prefix: bool) -> Result<RangeResponse, Error> {
        let range_end = if prefix { prefix_end(&key) } else { Vec::new() };
        let request = RangeRequest { key, range_end };
        self.unary("/etcdserverpb.KV/Range", request).await
    }

    /// A transaction: `success` when every comparison holds, else
    /// `failure`.
    pub async fn txn(&mut self, request: TxnRequest) -> Result<TxnResponse, Error> {
        self.unary("/etcdserverpb.KV/Txn", request).await
    }

    /// Deletes `key`.
    pub async fn delete(&mut self, key: Vec<u8>) -> Result<DeleteRangeResponse, Error> {
        let request = DeleteRangeRequest {
            key,
            range_end: Vec::new(),
        };
        self.unary("/etcdserverpb.KV/DeleteRange", request).await
    }

    /// Watches every key under `prefix` from `start_revision`, with
    /// progress notifications: the answers as they come. The request
    /// stream stays open as long as the watch is read (etcd ends a watch
    /// whose client stopped sending).
    pub async fn watch(
        &mut self,
        prefix: Vec<u8>,
        start_revision: i64,
    ) -> Result<tonic::Streaming<WatchResponse>, Error> {
        let create = WatchCreateRequest {
            range_end: prefix_end(&prefix),
            key: prefix,
            start_revision,
            progress_notify: true,
        };
        let request = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        };
        let requests = futures_util::stream::once(std::future::ready(request))
            .chain(futures_util::stream::pending());
        self.grpc.ready().await.map_err(Error::Transport)?;
        let codec = ProstCodec::<WatchRequest, WatchResponse>::default();
        let path = PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
        let answers = self
            .grpc
            .streaming(with_leader(requests), path, codec)
            .await
            .map_err(Error::Status)?;
        Ok(answers.into_inner())
    }
}

/// `message` as a request that only a member with a leader answers.
fn with_leader<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("hasleader", MetadataValue::from_static("true"));
    request
}

/// The end of the range of every key starting with `prefix`: the prefix
/// with its last byte below 0xff incremented, the bytes after it dropped
/// (etcd's `clientv3.GetPrefixRangeEnd`); `\0` (every key) for a prefix of
/// only 0xff bytes.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

// === etcd's messages (the fields used) ===

/// `etcdserverpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    /// The store's revision when the request was applied.
    #[prost(int64, tag = "3")]
    pub revision: i64,
}

/// `mvccpb.KeyValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// `mvccpb.Event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// [`EVENT_PUT`] or [`EVENT_DELETE`].
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The key after the event (a delete: the key, at the delete's
    /// revision).
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
}

/// `mvccpb.Event.EventType.PUT`.
pub const EVENT_PUT: i32 = 0;
/// `mvccpb.Event.EventType.DELETE`.
pub const EVENT_DELETE: i32 = 1;

/// `etcdserverpb.RangeRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
}

/// `etcdserverpb.RangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
}

/// `etcdserverpb.PutRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.DeleteRangeRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
}

/// `etcdserverpb.DeleteRangeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRangeResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// How many keys were deleted.
    #[prost(int64, tag = "2")]
    pub deleted: i64,
}

/// `etcdserverpb.RequestOp`: one operation of a transaction.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestOp {
    #[prost(oneof = "request_op::Request", tags = "2")]
    pub request: Option<request_op::Request>,
}

/// The operations a transaction here does.
pub mod request_op {
    /// `etcdserverpb.RequestOp.request`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Request {
        /// A put.
        #[prost(message, tag = "2")]
        RequestPut(super::PutRequest),
    }
}

impl RequestOp {
    /// Puts `value` at `key`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.into(),
                value: value.into(),
            })),
        }
    }
}

/// `etcdserverpb.Compare`: one condition of a transaction.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Compare {
    /// `Compare.CompareResult`: 0 is `EQUAL`.
    #[prost(int32, tag = "1")]
    pub result: i32,
    /// `Compare.CompareTarget`: 1 is `CREATE`, 2 `MOD`.
    #[prost(int32, tag = "2")]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub key: Vec<u8>,
    #[prost(oneof = "compare::TargetUnion", tags = "5, 6")]
    pub target_union: Option<compare::TargetUnion>,
}

/// What a comparison compares with.
pub mod compare {
    /// `etcdserverpb.Compare.target_union`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum TargetUnion {
        /// The revision that created the key (0: it does not exist).
        #[prost(int64, tag = "5")]
        CreateRevision(i64),
        /// The revision that last changed the key.
        #[prost(int64, tag = "6")]
        ModRevision(i64),
    }
}

impl Compare {
    /// The key's create revision is `revision` (0: the key does not
    /// exist).
    pub fn create_revision_is(key: impl Into<Vec<u8>>, revision: i64) -> Compare {
        Compare {
            result: 0,
            target: 1,
            key: key.into(),
            target_union: Some(compare::TargetUnion::CreateRevision(revision)),
        }
    }

    /// The key's last change was at `revision`.
    pub fn mod_revision_is(key: impl Into<Vec<u8>>, revision: i64) -> Compare {
        Compare {
            result: 0,
            target: 2,
            key: key.into(),
            target_union: Some(compare::TargetUnion::ModRevision(revision)),
        }
    }
}

/// `etcdserverpb.TxnRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    pub success: Vec<RequestOp>,
    #[prost(message, repeated, tag = "3")]
    pub failure: Vec<RequestOp>,
}

/// `etcdserverpb.TxnResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// Whether every comparison held (the `success` operations ran).
    #[prost(bool, tag = "2")]
    pub succeeded: bool,
}

/// `etcdserverpb.WatchRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchRequest {
    #[prost(oneof = "watch_request::RequestUnion", tags = "1")]
    pub request_union: Option<watch_request::RequestUnion>,
}

/// What a watch request asks.
pub mod watch_request {
    /// `etcdserverpb.WatchRequest.request_union`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum RequestUnion {
        /// Start a watch.
        #[prost(message, tag = "1")]
        CreateRequest(super::WatchCreateRequest),
    }
}

/// `etcdserverpb.WatchCreateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub start_revision: i64,
    #[prost(bool, tag = "4")]
    pub progress_notify: bool,
}

/// `etcdserverpb.WatchResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// The answer to the watch's creation.
    #[prost(bool, tag = "3")]
    pub created: bool,
    /// etcd ended the watch.
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    /// The watch's start revision was compacted: this is the oldest
    /// revision left.
    #[prost(int64, tag = "5")]
    pub compact_revision: i64,
    #[prost(string, tag = "6")]
    pub cancel_reason: String,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
}

impl ResponseHeader {
    /// The revision of an answer's `header`, 0 without one.
    pub fn revision_of(header: Option<&ResponseHeader>) -> i64 {
        header.map_or(0, |h| h.revision)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn a_prefix_range_ends_after_every_key_that_starts_with_it() {
        assert_eq!(prefix_end(b"/balancer/"), b"/balancer0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn messages_carry_etcds_field_numbers() {
        // A put inside a transaction guarded by a create revision of 0, as
        // etcd's own Go client encodes it (the bytes follow rpc.proto's
        // numbers: compare = 1 { result = 1, target = 2, key = 3,
        // create_revision = 5 }, success = 2 { request_put = 2 { key = 1,
        // value = 2 } }).
        let txn = TxnRequest {
            compare: vec![Compare::create_revision_is("k", 0)],
            success: vec![RequestOp::put("k", "v")],
            failure: Vec::new(),
        };
        assert_eq!(
            txn.encode_to_vec(),
            [
                0x0a, 0x07, 0x10, 0x01, 0x1a, 0x01, b'k', 0x28, 0x00, // compare
                0x12, 0x08, 0x12, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v', // success
            ]
        );
        // A watch answer with fields this client skips (watch_id = 2,
        // fragment = 7) and a delete event.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&[0x0a, 0x02, 0x18, 0x07]); // header { revision: 7 }
        bytes.extend_from_slice(&[0x10, 0x05]); // watch_id: 5
        bytes.extend_from_slice(&[0x38, 0x01]); // fragment: true
        bytes.extend_from_slice(&[0x5a, 0x07, 0x08, 0x01, 0x12, 0x03, 0x0a, 0x01, b'k']); // events
        let answer = WatchResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(ResponseHeader::revision_of(answer.header.as_ref()), 7);
        assert_eq!(answer.events.len(), 1);
        assert_eq!(answer.events[0].r#type, EVENT_DELETE);
        assert_eq!(
            answer.events[0].kv.as_ref().map(|kv| kv.key.as_slice()),
            Some(&b"k"[..])
        );
    }
}
