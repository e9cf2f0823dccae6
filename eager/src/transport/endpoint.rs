//! The quinn endpoint: listens for peers, dials them, runs the protocol core over QUIC
//! streams. One connection per peer (both directions share it), one control stream per
//! connection (the `hello` exchange), one bidirectional stream per subscription and per
//! resolve.
//!
//! Backpressure: the publisher writes each batch with `write_all`, which waits for QUIC
//! flow control; it reads the next events only when the previous batches are written. A
//! subscriber that stops reading (its handler channel is full) therefore slows the
//! publisher down; nothing is dropped.
//!
//! Key rotation ([`EagerEndpoint::set_keys`]): the endpoint's identity (its key set, and the
//! TLS configurations made from the current key) is replaced whole. Each connection keeps the
//! identity it was made with, so its certificate, its `hello` and its signatures always agree;
//! new handshakes, in both directions, present the new key (endorsed by the previous one, see
//! [`crate::transport::tls::Endorsement`]), and open connections are closed (application code
//! 3, `key rotated`) so that peers reconnect and learn the new key from the new `hello`.
//! Subscriptions resume from their cursors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bver_auth::{KeySet, PublicKey};
use bver_contracts::{BverError, ErrorCode, Phase, RefPtr};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::sync::{mpsc, watch};

use crate::proto::backoff::Backoff;
use crate::proto::handshake::{check_hello, hello};
use crate::proto::publisher::{Publisher, PublisherConfig};
use crate::proto::resolve::{
    ListClient, ListRequest, ListServer, RemoteAnswer, ResolveClient, ResolveServer,
};
use crate::proto::subscriber::{SubEvent, Subscriber, SubscriptionSpec};
use crate::sign::PeerKeys;
use crate::source::{EventSource, GrantVerifier, PointerSource};
use crate::transport::tls::{ChainKeys, Endorsement, PeerPins, certificate_key, configs};
use crate::wire::{Cursor, DEFAULT_MAX_FRAME, FrameDecoder, Message, encode};
use bver_resolver::{Listed, Page};

/// A configured peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Its platform id.
    pub platform: String,
    /// Where to dial it (`None`: it only dials us).
    pub addr: Option<SocketAddr>,
    /// SHA-256 fingerprints of its raw Ed25519 public keys (`PublicKey::fingerprint`).
    pub fingerprints: Vec<[u8; 32]>,
}

/// An endpoint's configuration.
#[derive(Debug)]
pub struct EagerConfig {
    /// This platform's id.
    pub platform: String,
    /// Its keys (the current key makes the certificate and signs batches).
    pub keys: Arc<KeySet>,
    /// The UDP address to listen on (port 0: any).
    pub listen: SocketAddr,
    /// Configured peers.
    pub peers: Vec<PeerConfig>,
    /// Publisher limits.
    pub publisher: PublisherConfig,
    /// Largest frame body accepted.
    pub max_frame: usize,
    /// How often a live subscription re-checks its grant.
    pub grant_recheck: Duration,
    /// First reconnect delay of subscriptions.
    pub reconnect_base: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// How long to wait for a connection and its `hello`.
    pub connect_timeout: Duration,
    /// How long a QUIC connection may stay silent before it is considered dead (the peer
    /// vanished without closing it); keep-alives every `min(5 s, idle_timeout / 3)` keep a
    /// healthy idle connection open. Must be above zero.
    pub idle_timeout: Duration,
    /// The current key's rotation endorsement (its certificate signed by the previous key),
    /// presented so that peers pinning only the previous key accept the current one.
    pub endorsement: Option<Endorsement>,
    /// Keys announced to peers ahead of a rotation (signed by the current key in `hello`):
    /// peers pin them, so that the endpoint can later restart with one of them as its
    /// current key without breaking the pins.
    pub next_keys: Vec<PublicKey>,
    /// Tests only: sign batches with this key instead of the current key, to play a
    /// publisher whose batches do not verify.
    #[doc(hidden)]
    pub forge_batches_with: Option<Arc<bver_auth::PlatformKey>>,
}

impl EagerConfig {
    /// Defaults around `platform` and its keys, listening on `listen`.
    pub fn new(platform: impl Into<String>, keys: Arc<KeySet>, listen: SocketAddr) -> Self {
        let platform = platform.into();
        Self {
            publisher: PublisherConfig::new(platform.clone()),
            platform,
            keys,
            listen,
            peers: Vec::new(),
            max_frame: DEFAULT_MAX_FRAME,
            grant_recheck: Duration::from_secs(5),
            reconnect_base: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            endorsement: None,
            next_keys: Vec::new(),
            forge_batches_with: None,
        }
    }
}

/// What the node provides to the endpoint.
#[derive(Clone)]
pub struct Services {
    /// The outbox, by channel.
    pub events: Arc<dyn EventSource>,
    /// References, for remote resolution.
    pub pointers: Arc<dyn PointerSource>,
    /// The grant checker.
    pub grants: Arc<dyn GrantVerifier>,
}

#[derive(Clone)]
struct PeerConn {
    conn: quinn::Connection,
    keys: PeerKeys,
}

/// What the endpoint presents and signs with; replaced whole by a key rotation. A connection
/// keeps the identity it was made with.
struct Identity {
    keys: Arc<KeySet>,
    endorsement: Option<Endorsement>,
    server: Arc<quinn::ServerConfig>,
    client: quinn::ClientConfig,
}

impl Identity {
    fn new(
        platform: &str,
        keys: Arc<KeySet>,
        endorsement: Option<Endorsement>,
        pins: &PeerPins,
        transport: &Arc<quinn::TransportConfig>,
    ) -> Result<Self, BverError> {
        let (server, client) = configs(platform, keys.current(), pins, endorsement.as_ref())?;
        let cfg_err = |e: &dyn std::fmt::Display| {
            BverError::new(
                ErrorCode::InvalidDefinition,
                Phase::Configuration,
                format!("QUIC configuration: {e}"),
            )
        };
        let server = QuicServerConfig::try_from(server).map_err(|e| cfg_err(&e))?;
        let client = QuicClientConfig::try_from(client).map_err(|e| cfg_err(&e))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(Arc::clone(transport));
        let mut client = quinn::ClientConfig::new(Arc::new(client));
        client.transport_config(Arc::clone(transport));
        Ok(Self {
            keys,
            endorsement,
            server: Arc::new(server),
            client,
        })
    }
}

/// The application close code of connections closed by a key rotation.
const KEY_ROTATED: u32 = 3;

struct Inner {
    config: EagerConfig,
    endpoint: quinn::Endpoint,
    identity: std::sync::RwLock<Arc<Identity>>,
    transport: Arc<quinn::TransportConfig>,
    /// Bumped at each key rotation: accepted connections close.
    rotations: watch::Sender<u64>,
    pins: PeerPins,
    addrs: HashMap<String, SocketAddr>,
    services: Services,
    /// One slot per peer: a dial to one peer never waits for a dial to another.
    conns: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<PeerConn>>>>>,
    next_id: AtomicU64,
}

/// A running EAGER endpoint. Dropping it does not stop it: call [`EagerEndpoint::close`].
#[derive(Clone)]
pub struct EagerEndpoint {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EagerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EagerEndpoint")
            .field("platform", &self.inner.config.platform)
            .field("addr", &self.inner.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    bver_auth::unix_now()
}

fn unreachable_peer(peer: &str, what: impl std::fmt::Display) -> BverError {
    BverError::new(
        ErrorCode::PeerUnreachable,
        Phase::Transport,
        format!("peer `{peer}`: {what}"),
    )
}

fn io_error(what: impl std::fmt::Display) -> BverError {
    BverError::new(
        ErrorCode::PeerUnreachable,
        Phase::Transport,
        what.to_string(),
    )
}

/// The default of [`EagerConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

fn transport_config(idle_timeout: Duration) -> Result<quinn::TransportConfig, BverError> {
    let bad = |why: &str| {
        BverError::new(
            ErrorCode::InvalidDefinition,
            Phase::Configuration,
            format!("EAGER idle timeout {idle_timeout:?}: {why}"),
        )
    };
    if idle_timeout.is_zero() {
        return Err(bad("must be above zero"));
    }
    let idle = quinn::IdleTimeout::try_from(idle_timeout).map_err(|_| bad("too large"))?;
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some((idle_timeout / 3).min(Duration::from_secs(5))));
    t.max_idle_timeout(Some(idle));
    t.max_concurrent_bidi_streams(4096u32.into());
    Ok(t)
}

impl EagerEndpoint {
    /// Bind the UDP socket, configure TLS from the platform key and the pinned peers, and
    /// start accepting connections. Needs a tokio runtime.
    pub fn start(config: EagerConfig, services: Services) -> Result<Self, BverError> {
        let pins = PeerPins::new();
        let mut addrs = HashMap::new();
        for p in &config.peers {
            for fp in &p.fingerprints {
                pins.pin(&p.platform, *fp);
            }
            if let Some(a) = p.addr {
                addrs.insert(p.platform.clone(), a);
            }
        }
        let transport = Arc::new(transport_config(config.idle_timeout)?);
        let identity = Identity::new(
            &config.platform,
            Arc::clone(&config.keys),
            config.endorsement.clone(),
            &pins,
            &transport,
        )?;
        let mut endpoint = quinn::Endpoint::server((*identity.server).clone(), config.listen)
            .map_err(|e| {
                BverError::new(
                    ErrorCode::Unavailable,
                    Phase::Configuration,
                    format!("bind EAGER on {}: {e}", config.listen),
                )
            })?;
        endpoint.set_default_client_config(identity.client.clone());
        let inner = Arc::new(Inner {
            config,
            endpoint,
            identity: std::sync::RwLock::new(Arc::new(identity)),
            transport,
            rotations: watch::channel(0).0,
            pins,
            addrs,
            services,
            conns: std::sync::Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(accept_loop(Arc::clone(&inner)));
        Ok(Self { inner })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, BverError> {
        self.inner.endpoint.local_addr().map_err(io_error)
    }

    /// The pinned fingerprints of every peer, including the keys peers announced; the node
    /// persists them (with the peer configuration) so that pins survive a restart.
    pub fn pins(&self) -> &PeerPins {
        &self.inner.pins
    }

    /// This platform's id.
    pub fn platform(&self) -> &str {
        &self.inner.config.platform
    }

    /// The key set the endpoint presents and signs with now.
    pub fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.inner.identity().keys)
    }

    /// Take a new key set (and the current key's rotation endorsement, if any) without a
    /// restart: new handshakes present the new current key (server certificate and client
    /// certificate), `hello`s announce the new set, batches and answers are signed with the
    /// new key. When the current key changed, open connections are closed so that peers
    /// reconnect and learn it (subscriptions resume from their cursors). Returns whether the
    /// current key changed.
    pub async fn set_keys(
        &self,
        keys: Arc<KeySet>,
        endorsement: Option<Endorsement>,
    ) -> Result<bool, BverError> {
        let inner = &self.inner;
        let old = inner.identity();
        let rotated = old.keys.current().public_key() != keys.current().public_key();
        let identity = if rotated || old.endorsement != endorsement {
            Identity::new(
                &inner.config.platform,
                keys,
                endorsement,
                &inner.pins,
                &inner.transport,
            )?
        } else {
            Identity {
                keys,
                endorsement,
                server: Arc::clone(&old.server),
                client: old.client.clone(),
            }
        };
        inner
            .endpoint
            .set_server_config(Some((*identity.server).clone()));
        let kid = identity.keys.current().key_id().to_string();
        if let Ok(mut current) = inner.identity.write() {
            *current = Arc::new(identity);
        }
        if rotated {
            tracing::info!(
                %kid,
                "EAGER: platform key rotated; open connections close so that peers reconnect and learn it"
            );
            inner.rotations.send_modify(|g| *g += 1);
            let slots: Vec<_> = inner
                .conns
                .lock()
                .map(|c| c.values().cloned().collect())
                .unwrap_or_default();
            for slot in slots {
                if let Some(pc) = slot.lock().await.take() {
                    pc.conn.close(KEY_ROTATED.into(), b"key rotated");
                }
            }
        }
        Ok(rotated)
    }

    /// Close every connection and stop listening.
    pub async fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"closing");
        self.inner.endpoint.wait_idle().await;
    }

    /// The connection to `peer` (dialed and handshaken if needed) and the peer's
    /// verifying keys.
    async fn connect(&self, peer: &str) -> Result<PeerConn, BverError> {
        connect(&self.inner, peer).await
    }

    /// Resolve `pointer` at `peer`, presenting `grant`, waiting at most `budget`.
    pub async fn resolve(
        &self,
        peer: &str,
        pointer: &RefPtr,
        grant: &str,
        budget: Duration,
    ) -> Result<RemoteAnswer, BverError> {
        let started = Instant::now();
        let timeout = || {
            BverError::new(
                ErrorCode::Timeout,
                Phase::Resolution,
                format!("{pointer}: no answer from `{peer}` within {budget:?}"),
            )
            .with_ref(pointer.to_string())
        };
        let work = async {
            let pc = self.connect(peer).await?;
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let remaining = budget.saturating_sub(started.elapsed());
            let (client, msg) = ResolveClient::new(
                id,
                pointer.clone(),
                grant,
                pc.keys.clone(),
                remaining,
                Instant::now(),
            );
            let answer = self.exchange(&pc, peer, &msg).await?;
            client.handle_message(answer, unix_now())
        };
        match tokio::time::timeout(budget, work).await {
            Ok(r) => r,
            Err(_) => Err(timeout()),
        }
    }

    /// One page of a remote listing (`request.repo` set: a repo; unset: the namespace).
    pub async fn list(
        &self,
        peer: &str,
        request: ListRequest,
        grant: &str,
        budget: Duration,
    ) -> Result<Page<Listed>, BverError> {
        let namespace = request.namespace.clone();
        let work = async {
            let pc = self.connect(peer).await?;
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let (client, msg) = ListClient::new(id, request, grant, budget);
            let answer = self.exchange(&pc, peer, &msg).await?;
            client.handle_message(answer)
        };
        match tokio::time::timeout(budget, work).await {
            Ok(r) => r,
            Err(_) => Err(BverError::new(
                ErrorCode::Timeout,
                Phase::Resolution,
                format!("listing of `{namespace}`: no answer from `{peer}` within {budget:?}"),
            )),
        }
    }

    /// Send `msg` on a new stream and read the one answer.
    async fn exchange(
        &self,
        pc: &PeerConn,
        peer: &str,
        msg: &Message,
    ) -> Result<Message, BverError> {
        let (mut send, mut recv) = pc.conn.open_bi().await.map_err(io_error)?;
        send.write_all(&encode(msg)).await.map_err(io_error)?;
        let _ = send.finish();
        match read_one(&mut recv, self.inner.config.max_frame).await {
            Ok(m) => Ok(m),
            Err(e) if e.code == ErrorCode::PeerUnreachable => Err(unreachable_peer(
                peer,
                format!("the stream ended without an answer: {}", e.message),
            )),
            Err(e) => Err(e),
        }
    }

    /// Run a subscription until it fails for good or the returned handle is dropped or
    /// stopped: connect, subscribe from `cursor`, pass the [`SubEvent`]s of each received
    /// frame (a batch: apply it, with the cursor, in one transaction) into `sink`, in
    /// order (bounded: a full channel throttles the publisher), reconnect with backoff and
    /// jitter after a retryable failure, resuming after the last delivered event. A
    /// non-retryable failure is sent as a last `[SubEvent::Failed]`.
    pub fn subscribe(
        &self,
        spec: SubscriptionSpec,
        cursor: Option<Cursor>,
        sink: mpsc::Sender<Vec<SubEvent>>,
    ) -> SubscriptionHandle {
        let (cursor_tx, cursor_rx) = watch::channel(cursor);
        let (link_tx, link_rx) = watch::channel(None);
        let this = self.clone();
        let task =
            tokio::spawn(
                async move { this.run_subscription(spec, sink, cursor_tx, link_tx).await },
            );
        SubscriptionHandle {
            task,
            cursor: cursor_rx,
            interruptions: link_rx,
        }
    }

    async fn run_subscription(
        self,
        spec: SubscriptionSpec,
        sink: mpsc::Sender<Vec<SubEvent>>,
        cursor: watch::Sender<Option<Cursor>>,
        interruptions: watch::Sender<Option<String>>,
    ) {
        let cfg = &self.inner.config;
        let mut backoff = Backoff::new(cfg.reconnect_base, cfg.reconnect_max);
        loop {
            let result = self
                .subscription_attempt(&spec, &sink, &cursor, &mut backoff)
                .await;
            if sink.is_closed() {
                return;
            }
            match result {
                Err(e) if !e.retryable => {
                    tracing::warn!(peer = %spec.peer, channel = %spec.channel, code = %e.code, "subscription stopped: {}", e.message);
                    let _ = sink.send(vec![SubEvent::Failed(e)]).await;
                    return;
                }
                Err(e) => {
                    tracing::info!(peer = %spec.peer, channel = %spec.channel, code = %e.code, "subscription interrupted, reconnecting: {}", e.message);
                    interruptions.send_replace(Some(format!("{}: {}", e.code, e.message)));
                }
                Ok(()) => {
                    tracing::info!(peer = %spec.peer, channel = %spec.channel, "subscription stream ended, reconnecting");
                    interruptions.send_replace(Some("the stream ended".to_owned()));
                }
            }
            let delay = backoff.next_delay(rand::random());
            tokio::time::sleep(delay).await;
        }
    }

    async fn subscription_attempt(
        &self,
        spec: &SubscriptionSpec,
        sink: &mpsc::Sender<Vec<SubEvent>>,
        cursor: &watch::Sender<Option<Cursor>>,
        backoff: &mut Backoff,
    ) -> Result<(), BverError> {
        let pc = self.connect(&spec.peer).await?;
        let (mut send, mut recv) = pc.conn.open_bi().await.map_err(io_error)?;
        let mut sub = Subscriber::new(spec.clone(), cursor.borrow().clone(), pc.keys.clone());
        let mut out = Vec::new();
        sub.poll_transmit(&mut out);
        send.write_all(&out).await.map_err(io_error)?;
        let mut dec = FrameDecoder::new(spec.max_frame.max(self.inner.config.max_frame));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            loop {
                let msg = match dec.next_message() {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => {
                        let e = BverError::from(e);
                        let _ = send.write_all(&encode(&Message::error(&e, None))).await;
                        let _ = send.finish();
                        return Err(e.retryable(true));
                    }
                };
                sub.handle_message(msg, unix_now());
                let mut events = Vec::new();
                let mut failed = None;
                while let Some(ev) = sub.poll_event() {
                    match ev {
                        SubEvent::Failed(e) => failed = Some(e),
                        SubEvent::Subscribed { .. } => {
                            backoff.reset();
                            events.push(ev);
                        }
                        ev => events.push(ev),
                    }
                }
                if !events.is_empty() {
                    // The cursor moves first: a reconnect resumes after what the sink got.
                    cursor.send_replace(sub.cursor().cloned());
                    sink.send(events)
                        .await
                        .map_err(|_| io_error("handler gone"))?;
                }
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            match recv.read(&mut buf).await.map_err(io_error)? {
                Some(n) => dec.push(&buf[..n]),
                None => {
                    sub.handle_end();
                    return Ok(());
                }
            }
        }
    }

    /// An EAGER resolver adapter routing to `peer` with `grant`.
    pub fn adapter(
        &self,
        peer: impl Into<String>,
        grant: impl Into<String>,
    ) -> crate::transport::adapter::EagerAdapter {
        crate::transport::adapter::EagerAdapter::new(self.clone(), peer.into(), grant.into())
    }
}

/// A running subscription. Dropping the handle does not stop it; [`SubscriptionHandle::stop`]
/// does, and so does dropping the event receiver.
#[derive(Debug)]
pub struct SubscriptionHandle {
    task: tokio::task::JoinHandle<()>,
    cursor: watch::Receiver<Option<Cursor>>,
    interruptions: watch::Receiver<Option<String>>,
}

impl SubscriptionHandle {
    /// The cursor after the last event passed (or being passed) to the sink.
    pub fn cursor(&self) -> Option<Cursor> {
        self.cursor.borrow().clone()
    }

    /// A watch of the last retryable interruption (connection lost, stream ended), set each
    /// time the subscription starts reconnecting; a new `Subscribed` event follows when it is
    /// back. For the subscriber's live state ("connected", "last error").
    pub fn interruptions(&self) -> watch::Receiver<Option<String>> {
        self.interruptions.clone()
    }

    /// Stop the subscription.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Whether the subscription task ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Inner {
    fn identity(&self) -> Arc<Identity> {
        match self.identity.read() {
            Ok(i) => Arc::clone(&i),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// The keys of the certificate chain the peer presented (already checked by the TLS
/// verifiers: one self-signed certificate, or an endorsement).
fn peer_keys(conn: &quinn::Connection) -> Option<ChainKeys> {
    let identity = conn.peer_identity()?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    Some(ChainKeys {
        key: certificate_key(certs.first()?)?,
        endorser: certs.get(1).and_then(certificate_key),
    })
}

async fn connect(inner: &Arc<Inner>, peer: &str) -> Result<PeerConn, BverError> {
    if !inner.pins.knows(peer) {
        return Err(BverError::new(
            ErrorCode::UnknownPeer,
            Phase::Configuration,
            format!("`{peer}` is not a configured peer"),
        ));
    }
    let slot = {
        let mut conns = inner
            .conns
            .lock()
            .map_err(|_| BverError::internal("connection table poisoned"))?;
        Arc::clone(conns.entry(peer.to_owned()).or_default())
    };
    let mut slot = slot.lock().await;
    if let Some(pc) = slot.as_ref() {
        if pc.conn.close_reason().is_none() {
            return Ok(pc.clone());
        }
        *slot = None;
    }
    let addr = *inner
        .addrs
        .get(peer)
        .ok_or_else(|| unreachable_peer(peer, "no address configured").retryable(false))?;
    let identity = inner.identity();
    let dial = async {
        let connecting = inner
            .endpoint
            .connect_with(identity.client.clone(), addr, peer)
            .map_err(|e| unreachable_peer(peer, e))?;
        let conn = connecting.await.map_err(|e| unreachable_peer(peer, e))?;
        let tls_key = peer_keys(&conn)
            .ok_or_else(|| unreachable_peer(peer, "no Ed25519 certificate after the handshake"))?
            .key;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| unreachable_peer(peer, e))?;
        let ours = hello(
            &inner.config.platform,
            &identity.keys,
            &inner.config.next_keys,
            unix_now(),
        );
        send.write_all(&encode(&ours))
            .await
            .map_err(|e| unreachable_peer(peer, e))?;
        let theirs = read_one(&mut recv, inner.config.max_frame).await?;
        let keys = match theirs {
            Message::Hello(h) => check_hello(&h, peer, &tls_key, unix_now())?,
            Message::Error(e) => return Err(e.to_bver()),
            other => {
                return Err(unreachable_peer(
                    peer,
                    format!("expected hello, got message type {}", other.type_code()),
                ));
            }
        };
        for k in keys.keys() {
            inner.pins.pin(peer, k.public.fingerprint());
        }
        Ok::<_, BverError>(PeerConn { conn, keys })
    };
    let pc = tokio::time::timeout(inner.config.connect_timeout, dial)
        .await
        .map_err(|_| unreachable_peer(peer, "connection timed out"))??;
    *slot = Some(pc.clone());
    Ok(pc)
}

/// Read exactly one message (skipping unknown ones) from `recv`.
async fn read_one(recv: &mut quinn::RecvStream, max_frame: usize) -> Result<Message, BverError> {
    let mut dec = FrameDecoder::new(max_frame);
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match dec.next_message().map_err(BverError::from)? {
            Some(Message::Unknown { .. }) => continue,
            Some(m) => return Ok(m),
            None => {}
        }
        // Read no further than the frame being received, so nothing after it is lost.
        let want = dec.wanted().min(buf.len());
        match recv.read(&mut buf[..want]).await.map_err(io_error)? {
            Some(n) => dec.push(&buf[..n]),
            None => {
                dec.finish().map_err(BverError::from)?;
                return Err(io_error("the stream ended before a message"));
            }
        }
    }
}

async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        let inner = Arc::clone(&inner);
        // Watch rotations before taking the identity: a rotation between the two closes the
        // connection rather than leaving it on the old key.
        let rotations = inner.rotations.subscribe();
        // The identity the handshake presents is the one the connection keeps.
        let identity = inner.identity();
        tokio::spawn(async move {
            let connecting = match incoming.accept_with(Arc::clone(&identity.server)) {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!("EAGER connection refused or failed: {e}");
                    return;
                }
            };
            match connecting.await {
                Ok(conn) => serve_connection(inner, conn, identity, rotations).await,
                Err(e) => tracing::info!("EAGER connection refused or failed: {e}"),
            }
        });
    }
}

async fn serve_connection(
    inner: Arc<Inner>,
    conn: quinn::Connection,
    identity: Arc<Identity>,
    mut rotations: watch::Receiver<u64>,
) {
    let Some(chain) = peer_keys(&conn) else {
        conn.close(1u32.into(), b"no certificate");
        return;
    };
    let tls_key = chain.key.clone();
    let Some(peer) = chain.platform(&inner.pins) else {
        tracing::warn!("EAGER peer refused after the handshake: key no longer pinned");
        conn.close(1u32.into(), b"unknown peer");
        return;
    };
    // The control stream: their hello, then ours.
    let keys = match conn.accept_bi().await {
        Ok((mut send, mut recv)) => {
            let theirs = match read_one(&mut recv, inner.config.max_frame).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::info!(%peer, "EAGER control stream failed: {}", e.message);
                    return;
                }
            };
            let checked = match theirs {
                Message::Hello(h) => check_hello(&h, &peer, &tls_key, unix_now()),
                other => Err(crate::proto::publisher::malformed(
                    "protocol_violation",
                    format!("expected hello, got message type {}", other.type_code()),
                )),
            };
            match checked {
                Ok(keys) => {
                    let ours = hello(
                        &inner.config.platform,
                        &identity.keys,
                        &inner.config.next_keys,
                        unix_now(),
                    );
                    if send.write_all(&encode(&ours)).await.is_err() {
                        return;
                    }
                    keys
                }
                Err(e) => {
                    tracing::warn!(%peer, code = %e.code, "EAGER hello refused: {}", e.message);
                    let _ = send.write_all(&encode(&Message::error(&e, None))).await;
                    let _ = send.finish();
                    conn.close(2u32.into(), b"hello refused");
                    return;
                }
            }
        }
        Err(_) => return,
    };
    for k in keys.keys() {
        inner.pins.pin(&peer, k.public.fingerprint());
    }
    tracing::debug!(%peer, "EAGER peer connected");
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => {
                let Ok((send, recv)) = accepted else { return };
                let inner = Arc::clone(&inner);
                let peer = peer.clone();
                let identity = Arc::clone(&identity);
                tokio::spawn(async move { serve_stream(inner, identity, peer, send, recv).await });
            }
            changed = rotations.changed() => {
                if changed.is_ok() {
                    conn.close(KEY_ROTATED.into(), b"key rotated");
                }
                return;
            }
        }
    }
}

async fn serve_stream(
    inner: Arc<Inner>,
    identity: Arc<Identity>,
    peer: String,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let first = match read_one(&mut recv, inner.config.max_frame).await {
        Ok(m) => m,
        Err(e) => {
            let _ = send.write_all(&encode(&Message::error(&e, None))).await;
            let _ = send.finish();
            return;
        }
    };
    match first {
        Message::Subscribe(sub) => {
            serve_subscription(inner, identity, peer, sub, send, recv).await;
        }
        Message::Resolve(req) => serve_resolve(inner, identity, peer, req, send).await,
        Message::List(req) => serve_list(inner, peer, req, send).await,
        other => {
            let e = crate::proto::publisher::malformed(
                "protocol_violation",
                format!(
                    "a stream cannot start with message type {}",
                    other.type_code()
                ),
            );
            let _ = send.write_all(&encode(&Message::error(&e, None))).await;
            let _ = send.finish();
        }
    }
}

async fn serve_resolve(
    inner: Arc<Inner>,
    identity: Arc<Identity>,
    peer: String,
    req: crate::wire::Resolve,
    mut send: quinn::SendStream,
) {
    let mut server = ResolveServer::new(inner.config.platform.clone(), peer.clone());
    let answer =
        match server.handle_request(req, &*inner.services.grants, Instant::now(), unix_now()) {
            Err(frame) => frame,
            Ok(fetch) => {
                let budget = server
                    .deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or_default();
                let result = match tokio::time::timeout(
                    budget,
                    inner.services.pointers.fetch(&peer, &fetch.reference),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(BverError::new(
                        ErrorCode::Timeout,
                        Phase::Resolution,
                        "deadline passed",
                    )),
                };
                server.handle_fetched(result, identity.keys.current(), Instant::now())
            }
        };
    let _ = send.write_all(&encode(&answer)).await;
    let _ = send.finish();
}

async fn serve_list(
    inner: Arc<Inner>,
    peer: String,
    req: crate::wire::List,
    mut send: quinn::SendStream,
) {
    let mut server = ListServer::new(peer.clone());
    let answer =
        match server.handle_request(req, &*inner.services.grants, Instant::now(), unix_now()) {
            Err(frame) => frame,
            Ok(l) => {
                let budget = server
                    .deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or_default();
                let listing = inner.services.pointers.list(
                    &peer,
                    &l.namespace,
                    l.repo.as_deref(),
                    l.kind.as_deref(),
                    l.cursor.as_deref(),
                    l.limit,
                );
                let result = match tokio::time::timeout(budget, listing).await {
                    Ok(r) => r,
                    Err(_) => Err(BverError::new(
                        ErrorCode::Timeout,
                        Phase::Resolution,
                        "deadline passed",
                    )),
                };
                server.handle_listed(result, Instant::now())
            }
        };
    let _ = send.write_all(&encode(&answer)).await;
    let _ = send.finish();
}

async fn serve_subscription(
    inner: Arc<Inner>,
    identity: Arc<Identity>,
    peer: String,
    sub: crate::wire::Subscribe,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let events = Arc::clone(&inner.services.events);
    let grants = Arc::clone(&inner.services.grants);
    let mut p = Publisher::new(inner.config.publisher.clone(), peer.clone());
    let info = events.channel(&sub.channel);
    let mut head_rx = events.watch_head();
    let pos = match events.position().await {
        Ok(p) => p,
        Err(e) => {
            let _ = send.write_all(&encode(&Message::error(&e, None))).await;
            let _ = send.finish();
            return;
        }
    };
    let epoch = pos.epoch.clone();
    p.handle_subscribe(sub, info, pos, &*grants, unix_now());
    p.handle_head(&epoch, *head_rx.borrow_and_update());
    let mut tick = tokio::time::interval(inner.config.grant_recheck);
    tick.tick().await;
    let mut dec = FrameDecoder::new(inner.config.max_frame);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut rbuf = vec![0u8; 4096];
    let key = match &inner.config.forge_batches_with {
        Some(k) => &**k,
        None => identity.keys.current(),
    };
    let mut head_open = true;
    loop {
        out.clear();
        if p.poll_transmit(&mut out) && send.write_all(&out).await.is_err() {
            return;
        }
        if p.is_closed() {
            let _ = send.finish();
            // Let the subscriber read the last frames before the stream is dropped.
            let _ = send.stopped().await;
            return;
        }
        if let Some(req) = p.poll_read() {
            let r = events.read(&req.channel, req.from_seq, req.limit).await;
            p.handle_read(r, key, &*grants, unix_now());
            continue;
        }
        tokio::select! {
            changed = head_rx.changed(), if head_open => {
                if changed.is_err() {
                    head_open = false;
                } else {
                    let head = *head_rx.borrow_and_update();
                    p.handle_head(&epoch, head);
                }
            }
            _ = tick.tick() => p.handle_tick(&*grants, unix_now()),
            r = recv.read(&mut rbuf) => match r {
                Ok(Some(n)) => {
                    dec.push(&rbuf[..n]);
                    loop {
                        match dec.next_message() {
                            Ok(Some(m)) => p.handle_message(m),
                            Ok(None) => break,
                            Err(e) => {
                                let _ = send.write_all(&encode(&Message::error(&e.into(), None))).await;
                                let _ = send.finish();
                                return;
                            }
                        }
                    }
                }
                // The subscriber finished its side or went away.
                Ok(None) | Err(_) => return,
            },
        }
    }
}
