//! Request/response messaging over turmoil TCP, with the faults TCP alone cannot make.
//!
//! Frames are length-delimited (`u32` big-endian length, then MessagePack with named
//! fields: self-describing as JSON is, so optional and tagged fields round-trip, but
//! strings travel as raw bytes, and a payload that is itself JSON text is not escaped
//! a second time). A client keeps a
//! small pool of idle connections and opens a new one whenever none is idle, so calls in
//! flight at once travel on separate connections and may overtake each other. Every call
//! has a deadline; a connection that timed out or failed is dropped, never reused (a
//! partitioned turmoil connection never recovers), and the next call reconnects.
//!
//! Before each call the client asks the fault hook, which draws from the host's
//! `rpc` stream at the message-fault rates the plan has switched on:
//!
//! - **loss**: the request is never sent; the caller waits out its timeout;
//! - **lost response**: the server runs the handler but does not answer: the caller
//!   times out although the work was done (the classic source of duplicates on retry);
//! - **duplicate**: an intermediary's retry (a proxy, a client library): a copy of the
//!   request is handled again, a little later, on a connection of its own, before the
//!   caller's call completes (never after the caller's later requests);
//! - **delay**: the wire holds the request, or the response, up to the plan's
//!   `delay_max_ms`; one delayed message in [`LATE_SHARE`] is held past the caller's
//!   deadline instead, so it arrives after the caller gave up (and perhaps retried): a
//!   late arrival. A connection carries one request at a time, so a delayed request
//!   holds back the later ones on its connection (as TCP would) and overtakes nothing
//!   but calls on other connections.
//!
//! Each decision is recorded in the trace; late arrivals and lost responses after the
//! handler ran count in the run's coverage.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

use crate::coverage::windows;
use crate::rng::SimRng;
use crate::trace::kind;
use crate::world::HostCtx;

/// The largest frame either side accepts.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Idle connections a client keeps per target.
pub const MAX_IDLE_CONNECTIONS: usize = 8;
/// How long after the original a duplicated request is delivered, at most.
pub const DUPLICATE_DELAY_MAX_MS: u64 = 50;
/// The share of delayed messages held past the caller's deadline (the tail of a
/// congested or rerouted path).
pub const LATE_SHARE: f64 = 0.1;

/// A call id as the trace shows it: `client.n`, unique per host (a `Display`, so a
/// trace detail that is only hashed never builds it as a string).
#[derive(Clone, Copy)]
struct CallId(u64);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// A message that can cross the simulated network.
pub trait RpcMessage: Serialize + DeserializeOwned + 'static {
    /// A short description for the trace (e.g. `put customer/7 v3`). It is hashed, so
    /// it must be a pure function of the message.
    fn label(&self) -> String;
}

/// Why a call failed. In every case the caller cannot know whether the server acted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No response within the call's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed (refused, reset, closed).
    #[error("connection failed: {0}")]
    Connection(String),
    /// A frame could not be encoded or decoded.
    #[error("bad frame: {0}")]
    Codec(String),
}

impl RpcError {
    /// Whether the call timed out (as opposed to failing fast).
    pub fn is_timeout(&self) -> bool {
        matches!(self, RpcError::Timeout(_))
    }
}

#[derive(Serialize, Deserialize)]
struct RequestFrame<T> {
    id: u64,
    reply: bool,
    /// How long the wire holds the request before the server reads it (a fault).
    hold_us: u64,
    /// How long the wire holds the response (a fault).
    response_hold_us: u64,
    /// When the caller gives up, in simulated microseconds: a request handled later is a
    /// late arrival (the world's annotation; the server does not act on it).
    deadline_us: u64,
    body: T,
}

#[derive(Serialize, Deserialize)]
struct ResponseFrame<T> {
    id: u64,
    body: T,
}

/// `value` as a frame: its length, then its encoding.
fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, RpcError> {
    let mut buf = vec![0u8; 4];
    crate::omit::positionally(|| rmp_serde::encode::write(&mut buf, value))
        .map_err(|e| RpcError::Codec(e.to_string()))?;
    let len = buf.len() - 4;
    if len > MAX_FRAME_BYTES {
        return Err(RpcError::Codec(format!(
            "frame of {len} bytes exceeds {MAX_FRAME_BYTES}"
        )));
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

async fn write_frame<T: Serialize>(
    stream: &mut (impl AsyncWrite + Unpin),
    value: &T,
) -> Result<(), RpcError> {
    let frame = encode_frame(value)?;
    stream.write_all(&frame).await.map_err(io_error)
}

async fn read_frame<T: DeserializeOwned>(stream: &mut (impl AsyncRead + Unpin)) -> Result<T, RpcError> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(io_error)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(RpcError::Codec(format!(
            "frame of {len} bytes exceeds {MAX_FRAME_BYTES}"
        )));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await.map_err(io_error)?;
    rmp_serde::from_slice(&buf).map_err(|e| RpcError::Codec(e.to_string()))
}

fn io_error(e: io::Error) -> RpcError {
    RpcError::Connection(e.kind().to_string())
}

type Handler<Req, Resp> = Rc<dyn Fn(Req) -> Pin<Box<dyn Future<Output = Resp>>>>;

/// Serves `handler` on `port` of this host until the host stops. Each connection is
/// served by its own task, one request at a time.
pub async fn serve<Req, Resp, H, Fut>(ctx: HostCtx, port: u16, handler: H) -> io::Result<()>
where
    Req: RpcMessage,
    Resp: RpcMessage,
    H: Fn(Req) -> Fut + 'static,
    Fut: Future<Output = Resp> + 'static,
{
    let handler: Handler<Req, Resp> = Rc::new(move |req| Box::pin(handler(req)));
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        let peer = turmoil::reverse_lookup(peer.ip()).unwrap_or_else(|| peer.ip().to_string());
        tokio::task::spawn_local(serve_connection(ctx.clone(), stream, peer, Rc::clone(&handler)));
    }
}

async fn serve_connection<Req: RpcMessage, Resp: RpcMessage>(
    ctx: HostCtx,
    mut stream: TcpStream,
    peer: String,
    handler: Handler<Req, Resp>,
) {
    while let Ok(frame) = read_frame::<RequestFrame<Req>>(&mut stream).await {
        if frame.hold_us > 0 {
            crate::timer::sleep(Duration::from_micros(frame.hold_us)).await;
        }
        ctx.record_fmt(
            kind::DELIVER,
            format_args!("call={} from={peer} {}", CallId(frame.id), frame.body.label()),
        );
        if ctx.now().as_micros() > frame.deadline_us {
            ctx.record_fmt(kind::LATE_ARRIVAL, format_args!("call={}", CallId(frame.id)));
            ctx.cover(windows::TIMEOUT_LATE_ARRIVAL);
        }
        let response = handler(frame.body).await;
        if !frame.reply {
            ctx.record_fmt(
                kind::LOST_RESPONSE,
                format_args!("call={} to={peer} {}", CallId(frame.id), response.label()),
            );
            ctx.cover(windows::LOST_RESPONSE_AFTER_HANDLER);
            // The connection broke after the handler ran: nothing more on it is read
            // (a pipelining client's later requests are lost with it), and it is held
            // until the client gives up and closes it.
            let mut discard = [0u8; 1024];
            while stream.read(&mut discard).await.is_ok_and(|n| n > 0) {}
            return;
        }
        if frame.response_hold_us > 0 {
            crate::timer::sleep(Duration::from_micros(frame.response_hold_us)).await;
        }
        if write_frame(
            &mut stream,
            &ResponseFrame {
                id: frame.id,
                body: response,
            },
        )
        .await
        .is_err()
        {
            return;
        }
    }
}

/// What the fault hook decided for one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CallFaults {
    lose_request: bool,
    lose_response: bool,
    duplicate_after: Option<Duration>,
    delay: Option<Duration>,
    response_delay: Option<Duration>,
}

struct ClientState {
    ctx: HostCtx,
    target: String,
    port: u16,
    timeout: Duration,
    idle: RefCell<Vec<TcpStream>>,
    /// This client's number on its host; call ids carry it so they are unique per host.
    client: u32,
    next_call: Cell<u64>,
    rng: RefCell<SimRng>,
}

/// A typed client for one server (`target:port`). Clones share connections.
pub struct RpcClient<Req, Resp> {
    state: Rc<ClientState>,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Clone for RpcClient<Req, Resp> {
    fn clone(&self) -> Self {
        RpcClient {
            state: Rc::clone(&self.state),
            _types: PhantomData,
        }
    }
}

impl<Req: RpcMessage, Resp: RpcMessage> RpcClient<Req, Resp> {
    /// A client on this host for the server at `target:port`; every call gives up
    /// after `timeout`.
    pub fn new(ctx: &HostCtx, target: &str, port: u16, timeout: Duration) -> Self {
        RpcClient {
            state: Rc::new(ClientState::new(ctx, target, port, timeout)),
            _types: PhantomData,
        }
    }

    /// Sends `request` and waits for the response, the timeout, or a failure.
    pub async fn call(&self, request: &Req) -> Result<Resp, RpcError> {
        let s = &self.state;
        let (id, faults) = s.begin(request);
        let id_text = CallId(id);
        if faults.lose_request {
            s.ctx.record_fmt(
                kind::DROP,
                format_args!("call={id_text} to={} {}", s.target, request.label()),
            );
            crate::timer::sleep(s.timeout).await;
            s.ctx.record_fmt(kind::TIMEOUT, format_args!("call={id_text}"));
            return Err(RpcError::Timeout(s.timeout));
        }
        let frame = s.frame(id, &faults, request);
        let outcome = crate::timer::timeout(s.timeout, self.exchange(&frame)).await;
        if let Some(after) = faults.duplicate_after {
            s.duplicate(&frame, after).await?;
        }
        s.finish(id_text, outcome.map_err(|_| ()))
    }

    async fn connection(&self) -> Result<TcpStream, RpcError> {
        if let Some(stream) = self.state.idle.borrow_mut().pop() {
            return Ok(stream);
        }
        self.state.connect().await
    }

    fn give_back(&self, stream: TcpStream) {
        let mut idle = self.state.idle.borrow_mut();
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(stream);
        }
    }

    async fn exchange(&self, frame: &RequestFrame<&Req>) -> Result<Resp, RpcError> {
        let outcome = self.exchange_on_pool(frame).await;
        if matches!(outcome, Err(RpcError::Connection(_))) {
            // The server's end went away (a restart resets every connection to it): the
            // other idle connections are as dead as this one, and a client would
            // otherwise spend one failed call on each of them.
            self.state.idle.borrow_mut().clear();
        }
        outcome
    }

    async fn exchange_on_pool(&self, frame: &RequestFrame<&Req>) -> Result<Resp, RpcError> {
        let mut stream = self.connection().await?;
        write_frame(&mut stream, frame).await?;
        if !frame.reply {
            // The server will not answer; wait to be timed out like a real caller.
            std::future::pending::<()>().await;
        }
        let response: ResponseFrame<Resp> = read_frame(&mut stream).await?;
        if response.id != frame.id {
            return Err(RpcError::Codec(format!(
                "response to call {} on call {}'s connection",
                response.id, frame.id
            )));
        }
        self.give_back(stream);
        Ok(response.body)
    }
}

impl ClientState {
    fn new(ctx: &HostCtx, target: &str, port: u16, timeout: Duration) -> Self {
        ClientState {
            ctx: ctx.clone(),
            target: target.to_string(),
            port,
            timeout,
            idle: RefCell::new(Vec::new()),
            client: ctx.next_client_number(),
            next_call: Cell::new(0),
            rng: RefCell::new(ctx.rng(&format!("rpc/{target}:{port}"))),
        }
    }

    /// The next call id, with the trace's send and delay records and the fault hook's
    /// decision for it.
    fn begin<Req: RpcMessage>(&self, request: &Req) -> (u64, CallFaults) {
        let id = (u64::from(self.client) << 32) | self.next_call.get();
        self.next_call.set(self.next_call.get() + 1);
        let id_text = CallId(id);
        let faults = self.decide();
        self.ctx.record_fmt(
            kind::SEND,
            format_args!("call={id_text} to={} {}", self.target, request.label()),
        );
        for (what, delay) in [("request", faults.delay), ("response", faults.response_delay)] {
            if let Some(delay) = delay {
                self.ctx.record_fmt(
                    kind::DELAY,
                    format_args!("call={id_text} {what} by={}ms", delay.as_millis()),
                );
            }
        }
        (id, faults)
    }

    fn frame<'a, Req>(&self, id: u64, faults: &CallFaults, body: &'a Req) -> RequestFrame<&'a Req> {
        let micros = |d: Option<Duration>| d.map_or(0, |d| d.as_micros() as u64);
        RequestFrame {
            id,
            reply: !faults.lose_response,
            hold_us: micros(faults.delay),
            response_hold_us: micros(faults.response_delay),
            deadline_us: (self.ctx.now() + self.timeout).as_micros(),
            body,
        }
    }

    /// An intermediary's retry (a proxy or load balancer that timed out on the upstream,
    /// a client library's own retry): the server handles the request a second time
    /// before the caller's call completes, so the copy never lands after the caller's
    /// later requests, as TCP could not make it do.
    async fn duplicate<Req: Serialize>(
        &self,
        frame: &RequestFrame<&Req>,
        after: Duration,
    ) -> Result<(), RpcError> {
        self.ctx.record(
            kind::DUPLICATE,
            format!("call={} after={}ms", CallId(frame.id), after.as_millis()),
        );
        let copy = encode_frame(frame)?;
        crate::timer::sleep(after).await;
        let _ = crate::timer::timeout(self.timeout, self.exchange_raw(&copy, frame.id)).await;
        Ok(())
    }

    /// The trace's record of how a call ended, and its result.
    fn finish<Resp: RpcMessage>(
        &self,
        id_text: CallId,
        outcome: Result<Result<Resp, RpcError>, ()>,
    ) -> Result<Resp, RpcError> {
        match outcome {
            Ok(Ok(response)) => {
                self.ctx.record_fmt(
                    kind::RESPONSE,
                    format_args!("call={id_text} {}", response.label()),
                );
                Ok(response)
            }
            Ok(Err(error)) => {
                self.ctx
                    .record_fmt(kind::CALL_ERROR, format_args!("call={id_text} {error}"));
                Err(error)
            }
            Err(()) => {
                self.ctx.record_fmt(kind::TIMEOUT, format_args!("call={id_text}"));
                Err(RpcError::Timeout(self.timeout))
            }
        }
    }

    async fn connect(&self) -> Result<TcpStream, RpcError> {
        TcpStream::connect((self.target.as_str(), self.port))
            .await
            .map_err(io_error)
    }

    fn decide(&self) -> CallFaults {
        let rates = self.ctx.message_faults(&self.target);
        if !rates.any() {
            return CallFaults::default();
        }
        let mut rng = self.rng.borrow_mut();
        let mut draw = |p: f64| p > 0.0 && rng.gen_bool(p.min(1.0));
        let lose_request = draw(rates.loss);
        let lose_response = draw(rates.lost_response);
        let duplicate = draw(rates.duplicate);
        let delay = draw(rates.delay);
        let response_delay = draw(rates.delay);
        let timeout_ms = self.timeout.as_millis() as u64;
        let mut hold = |delayed: bool| {
            delayed.then(|| {
                // Past the caller's deadline, or within the plan's bound.
                let ms = if rng.gen_bool(LATE_SHARE) {
                    timeout_ms + rng.gen_range(1..=timeout_ms.max(1))
                } else {
                    rng.gen_range(1..=rates.delay_max_ms.max(1))
                };
                Duration::from_millis(ms)
            })
        };
        let delay = hold(delay);
        let response_delay = hold(response_delay);
        CallFaults {
            lose_request,
            lose_response,
            duplicate_after: duplicate
                .then(|| Duration::from_millis(rng.gen_range(1..=DUPLICATE_DELAY_MAX_MS))),
            delay,
            response_delay,
        }
    }

    /// Sends an already-encoded duplicate on a fresh connection and discards the answer.
    async fn exchange_raw(&self, frame: &[u8], id: u64) -> Result<(), RpcError> {
        let mut stream = self.connect().await?;
        stream.write_all(frame).await.map_err(io_error)?;
        let response: ResponseFrame<serde::de::IgnoredAny> = read_frame(&mut stream).await?;
        debug_assert_eq!(response.id, id);
        Ok(())
    }
}

/// A client that carries every call on one connection with several in flight at once,
/// as Kafka's `NetworkClient` does (`max.in.flight.requests.per.connection`; the
/// caller bounds how many). The server reads one connection's requests in order and
/// answers each before reading the next, as a Kafka broker mutes a connection while it
/// handles a request, so requests are handled in the order they were sent.
///
/// The message faults act on the connection as TCP lets them: a delayed request holds
/// back every later one on it; a lost request or a lost response is the connection
/// dying there (nothing after it is handled or answered) without either side knowing.
/// A call that times out closes the connection, which fails every other call still in
/// flight on it, oldest first, with a connection error, as Kafka's client disconnects
/// from a node whose request timed out; what the server had already read of them it
/// may still handle. The next call connects again.
pub struct PipelinedClient<Req, Resp> {
    state: Rc<ClientState>,
    pipe: Rc<RefCell<Option<Rc<Pipe<Resp>>>>>,
    /// Taken by each call to connect and write: calls go out in the order made.
    sending: Rc<tokio::sync::Mutex<()>>,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Clone for PipelinedClient<Req, Resp> {
    fn clone(&self) -> Self {
        PipelinedClient {
            state: Rc::clone(&self.state),
            pipe: Rc::clone(&self.pipe),
            sending: Rc::clone(&self.sending),
            _types: PhantomData,
        }
    }
}

type Reply<Resp> = tokio::sync::oneshot::Sender<Result<Resp, RpcError>>;

/// One open connection of a [`PipelinedClient`].
struct Pipe<Resp> {
    writer: tokio::sync::Mutex<turmoil::net::tcp::OwnedWriteHalf>,
    /// Calls sent and not answered, by call id (ids grow, so oldest first).
    waiting: RefCell<std::collections::BTreeMap<u64, Reply<Resp>>>,
    /// A request was lost on the wire: nothing written after it arrives.
    black_holed: Cell<bool>,
    reader: RefCell<Option<tokio::task::JoinHandle<()>>>,
}

impl<Resp> Pipe<Resp> {
    /// Fails every waiting call, oldest first, and stops reading.
    fn close(&self, why: &str) {
        if let Some(reader) = self.reader.borrow_mut().take() {
            reader.abort();
        }
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for (_, reply) in waiting {
            let _ = reply.send(Err(RpcError::Connection(why.to_string())));
        }
    }
}

impl<Req: RpcMessage, Resp: RpcMessage> PipelinedClient<Req, Resp> {
    /// A client on this host for the server at `target:port`; every call gives up
    /// after `timeout`.
    pub fn new(ctx: &HostCtx, target: &str, port: u16, timeout: Duration) -> Self {
        PipelinedClient {
            state: Rc::new(ClientState::new(ctx, target, port, timeout)),
            pipe: Rc::default(),
            sending: Rc::default(),
            _types: PhantomData,
        }
    }

    /// Sends `request` on the open connection (opening one if none is) and waits for
    /// its response, the timeout, or the connection's failure.
    pub async fn call(&self, request: &Req) -> Result<Resp, RpcError> {
        let s = &self.state;
        let (id, faults) = s.begin(request);
        let frame = s.frame(id, &faults, request);
        let used = RefCell::new(None);
        let exchange = async {
            let (pipe, answer) = self.send(&frame, &faults).await?;
            *used.borrow_mut() = Some(pipe);
            answer
                .await
                .unwrap_or_else(|_| Err(RpcError::Connection("closed".to_string())))
        };
        let outcome = crate::timer::timeout(s.timeout, exchange).await.map_err(|_| ());
        if outcome.is_err() {
            if let Some(pipe) = used.take() {
                pipe.close("disconnected: a request on the connection timed out");
                self.forget(&pipe);
            }
        }
        if let Some(after) = faults.duplicate_after {
            s.duplicate(&frame, after).await?;
        }
        s.finish(CallId(id), outcome)
    }

    /// Writes the frame on the connection (opening one if none is open) and returns
    /// where its answer will come. Calls write in the order they were made: one at a
    /// time, through a fair lock, including the connect.
    async fn send(
        &self,
        frame: &RequestFrame<&Req>,
        faults: &CallFaults,
    ) -> Result<
        (
            Rc<Pipe<Resp>>,
            tokio::sync::oneshot::Receiver<Result<Resp, RpcError>>,
        ),
        RpcError,
    > {
        let _in_call_order = self.sending.lock().await;
        let pipe = self.pipe().await?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        pipe.waiting.borrow_mut().insert(frame.id, reply);
        if faults.lose_request {
            self.state.ctx.record_fmt(
                kind::DROP,
                format_args!(
                    "call={} to={} {}",
                    CallId(frame.id),
                    self.state.target,
                    frame.body.label()
                ),
            );
            pipe.black_holed.set(true);
        }
        if !pipe.black_holed.get() {
            let written = write_frame(&mut *pipe.writer.lock().await, frame).await;
            if let Err(error) = written {
                pipe.close(&error.to_string());
                self.forget(&pipe);
            }
        }
        Ok((pipe, answer))
    }

    /// The open connection, or a new one with its reader.
    async fn pipe(&self) -> Result<Rc<Pipe<Resp>>, RpcError> {
        if let Some(pipe) = self.pipe.borrow().as_ref() {
            return Ok(Rc::clone(pipe));
        }
        let stream = self.state.connect().await?;
        let (mut read, write) = stream.into_split();
        let pipe = Rc::new(Pipe {
            writer: tokio::sync::Mutex::new(write),
            waiting: RefCell::default(),
            black_holed: Cell::new(false),
            reader: RefCell::new(None),
        });
        let reading = Rc::downgrade(&pipe);
        let holder = Rc::downgrade(&self.pipe);
        let reader = tokio::task::spawn_local(async move {
            loop {
                let frame = read_frame::<ResponseFrame<Resp>>(&mut read).await;
                let Some(pipe) = reading.upgrade() else { return };
                match frame {
                    Ok(response) => {
                        let reply = pipe.waiting.borrow_mut().remove(&response.id);
                        if let Some(reply) = reply {
                            let _ = reply.send(Ok(response.body));
                        }
                    }
                    Err(error) => {
                        pipe.reader.borrow_mut().take();
                        pipe.close(&error.to_string());
                        if let Some(holder) = holder.upgrade() {
                            let mut open = holder.borrow_mut();
                            if open.as_ref().is_some_and(|p| Rc::ptr_eq(p, &pipe)) {
                                *open = None;
                            }
                        }
                        return;
                    }
                }
            }
        });
        *pipe.reader.borrow_mut() = Some(reader);
        *self.pipe.borrow_mut() = Some(Rc::clone(&pipe));
        Ok(pipe)
    }

    /// Drops `pipe` as the open connection, if it still is.
    fn forget(&self, pipe: &Rc<Pipe<Resp>>) {
        let mut open = self.pipe.borrow_mut();
        if open.as_ref().is_some_and(|p| Rc::ptr_eq(p, pipe)) {
            *open = None;
        }
    }
}
