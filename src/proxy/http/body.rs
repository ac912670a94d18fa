//! The bodies of http mode: a request's, read by our own HTTP/1.1 server
//! or by hyper's ([`RequestBody`]), and those it answers with: a backend's
//! answer streamed through ([`Relayed`], which finishes the request's
//! bookkeeping when its last byte is sent or the client goes away), or a
//! short text of our own ([`local`]).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, SizeHint};

use super::Finish;
use super::h1::body::{BodyError as RequestBodyError, ClientBody};
use super::h1::client::{BackendBody, BodyError};
use super::h1::codec::RawFields;

/// A request's body, from whichever server read its head: what
/// [`super::answer`] sends on. Its size hint and end of stream decide the
/// request's framing to the backend (none, a length, or chunked).
#[derive(Debug)]
pub enum RequestBody {
    /// Read by our own HTTP/1.1 server (cleartext connections).
    Own(ClientBody),
    /// Read by hyper (connections over TLS: HTTP/2 streams and HTTP/1.1).
    /// Boxed: hyper's body is larger than ours, and every cleartext
    /// request's futures would carry the difference.
    Hyper(Box<hyper::body::Incoming>),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            RequestBody::Own(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Hyper(body) => Pin::new(&mut **body)
                .poll_frame(cx)
                .map_err(RequestBodyError::Stream),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Own(body) => body.is_end_stream(),
            RequestBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Own(body) => body.size_hint(),
            RequestBody::Hyper(body) => body.size_hint(),
        }
    }
}

/// What a client is answered with.
pub type ResponseBody = Either<Relayed, Full<Bytes>>;

/// A short text body of the balancer's own.
pub fn local(text: &'static str) -> ResponseBody {
    Either::Right(Full::new(Bytes::from_static(text.as_bytes())))
}

/// A backend's answer body on its way to the client. Counts the bytes; at
/// its end (or when dropped before it: the client left, or the backend
/// failed mid-body) hands the request's [`Finish`] its outcome, which gives
/// a connection that completed its exchange back to the pool.
#[derive(Debug)]
pub struct Relayed {
    inner: BackendBody,
    /// The answer's header lines, as they came.
    raw: RawFields,
    finish: Option<Finish>,
    bytes: u64,
}

impl Relayed {
    /// `inner`, finished by `finish`.
    pub fn new(inner: BackendBody, raw: RawFields, finish: Finish) -> Relayed {
        Relayed {
            inner,
            raw,
            finish: Some(finish),
            bytes: 0,
        }
    }

    /// The answer's header lines, as they came.
    pub fn raw(&self) -> &RawFields {
        &self.raw
    }

    fn done(&mut self, complete: bool) {
        if let Some(finish) = self.finish.take() {
            let reusable = if complete {
                self.inner.reusable()
            } else {
                None
            };
            finish.done(complete, self.bytes, reusable);
        }
    }
}

impl Body for Relayed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    this.bytes += n;
                    if let Some(finish) = &this.finish {
                        finish
                            .backend()
                            .stats
                            .bytes_out
                            .fetch_add(n, Ordering::Relaxed);
                    }
                }
                if this.inner.is_end_stream() {
                    this.done(true);
                }
            }
            Poll::Ready(None) => this.done(true),
            Poll::Ready(Some(Err(_))) => this.done(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        // An empty body may never be polled: it is complete as it is.
        let complete = self.inner.is_end_stream();
        self.done(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::{ClientBody, RequestBody};

    #[test]
    fn a_request_body_is_no_larger_than_our_own_h1_body() {
        // What every cleartext request's futures carry does not grow with
        // hyper's body (boxed).
        assert_eq!(
            std::mem::size_of::<RequestBody>(),
            std::mem::size_of::<ClientBody>()
        );
    }
}
