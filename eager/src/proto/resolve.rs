//! Remote resolution, one request per stream: the requester sends `resolve`, the owner
//! checks the grant (`eager:resolve:NAMESPACE`), fetches the reference, applies the
//! attribute path and answers `resolved` with a signed answer, or an `error` naming the
//! request.
//!
//! Server calling order: [`ResolveServer::handle_request`] (→ a [`FetchRequest`] or an
//! error frame), the driver fetches, [`ResolveServer::handle_fetched`] with `now` (→ the
//! answer frame, or `timeout` past the deadline).
//!
//! Client calling order: [`ResolveClient::new`] (→ the request frame), then
//! [`ResolveClient::handle_message`] with the answer, or [`ResolveClient::handle_timeout`]
//! once [`ResolveClient::deadline`] passes.

use std::time::{Duration, Instant};

use bver_auth::PlatformKey;
use bver_contracts::{BverError, ErrorCode, Phase, RefPtr, SignatureBytes};
use bver_resolver::Fetched;

use crate::proto::publisher::check_grant;
use crate::sign::{PeerKeys, sign_bytes, verify_bytes};
use crate::source::GrantVerifier;
use crate::wire::{Answer, Bytes, Message, Resolve, ResolvedMsg};

/// Longest deadline a responder honours, whatever the request says.
pub const MAX_DEADLINE: Duration = Duration::from_secs(30);

/// A fetch the driver must perform with [`crate::source::PointerSource::fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The whole-reference pointer to fetch.
    pub reference: RefPtr,
}

/// The owner's side of one resolve stream.
#[derive(Debug)]
pub struct ResolveServer {
    platform: String,
    peer: String,
    request: Option<(u64, RefPtr, Instant)>,
}

impl ResolveServer {
    /// A stream from `peer`, answered as `platform`.
    pub fn new(platform: impl Into<String>, peer: impl Into<String>) -> Self {
        Self {
            platform: platform.into(),
            peer: peer.into(),
            request: None,
        }
    }

    /// The request frame: parse the pointer, check the grant and scope. `Err` is the
    /// `error` frame to send.
    pub fn handle_request(
        &mut self,
        req: Resolve,
        grants: &dyn GrantVerifier,
        now: Instant,
        now_unix: u64,
    ) -> Result<FetchRequest, Message> {
        let id = req.id;
        let pointer =
            RefPtr::parse(&req.pointer).map_err(|e| Message::error(&e.into(), Some(id)))?;
        check_grant(
            grants,
            &req.grant,
            &self.peer,
            &format!("eager:resolve:{}", pointer.namespace()),
            now_unix,
        )
        .map_err(|e| Message::error(&e, Some(id)))?;
        let budget = Duration::from_millis(u64::from(req.deadline_ms)).min(MAX_DEADLINE);
        let reference = pointer.without_path();
        self.request = Some((id, pointer, now + budget));
        Ok(FetchRequest { reference })
    }

    /// The deadline of the current request.
    pub fn deadline(&self) -> Option<Instant> {
        self.request.as_ref().map(|r| r.2)
    }

    /// The fetch's result: the signed answer, or an error frame (`not_found`, the
    /// source's error, or `timeout` when `now` is past the deadline).
    pub fn handle_fetched(
        &mut self,
        result: Result<Option<Fetched>, BverError>,
        key: &PlatformKey,
        now: Instant,
    ) -> Message {
        let Some((id, pointer, deadline)) = self.request.take() else {
            return Message::error(&BverError::internal("no resolve request in flight"), None);
        };
        if now > deadline {
            let e = BverError::new(
                ErrorCode::Timeout,
                Phase::Resolution,
                format!("{pointer}: the deadline passed before the answer was ready"),
            );
            return Message::error(&e, Some(id));
        }
        let fetched = match result {
            Ok(Some(f)) => f,
            Ok(None) => {
                let e = BverError::not_found(format!("{} does not exist", pointer.reference_str()))
                    .with_ref(pointer.to_string());
                return Message::error(&e, Some(id));
            }
            Err(e) => return Message::error(&e, Some(id)),
        };
        let value = match pointer.path() {
            None => fetched.value,
            Some(p) => match bver_resolver::path::select(&fetched.value, p) {
                Ok(v) => v.clone(),
                Err(m) => return Message::error(&m.into_error(&pointer.to_string()), Some(id)),
            },
        };
        let answer = Answer {
            origin: self.platform.clone(),
            id,
            pointer: pointer.to_string(),
            version: fetched.version,
            kind: fetched.kind,
            value,
            updated_at: fetched.updated_at,
        };
        let mut bytes = Vec::new();
        if let Err(e) = ciborium::into_writer(&answer, &mut bytes) {
            return Message::error(
                &BverError::internal(format!("encode answer: {e}")),
                Some(id),
            );
        }
        let (kid, sig) = sign_bytes(key, &bytes);
        Message::Resolved(ResolvedMsg {
            id,
            answer: Bytes(bytes),
            kid,
            sig,
        })
    }
}

/// A verified remote answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteAnswer {
    /// The decoded answer.
    pub answer: Answer,
    /// The exact signed bytes.
    pub bytes: Vec<u8>,
    /// The signing key's id.
    pub kid: String,
    /// The origin's signature of `bytes`.
    pub sig: SignatureBytes,
}

/// The requester's side of one resolve stream.
#[derive(Debug)]
pub struct ResolveClient {
    id: u64,
    pointer: RefPtr,
    keys: PeerKeys,
    deadline: Instant,
}

impl ResolveClient {
    /// A request `id` for `pointer` to the peer whose keys are `keys`, waiting `budget`
    /// from `now`. Returns the request frame to send.
    pub fn new(
        id: u64,
        pointer: RefPtr,
        grant: &str,
        keys: PeerKeys,
        budget: Duration,
        now: Instant,
    ) -> (Self, Message) {
        let msg = Message::Resolve(Resolve {
            id,
            pointer: pointer.to_string(),
            deadline_ms: u32::try_from(budget.as_millis()).unwrap_or(u32::MAX),
            grant: grant.to_owned(),
        });
        (
            Self {
                id,
                pointer,
                keys,
                deadline: now + budget,
            },
            msg,
        )
    }

    /// When to give up.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The `timeout` error, once `now` reached the deadline.
    pub fn handle_timeout(&self, now: Instant) -> Option<BverError> {
        (now >= self.deadline).then(|| {
            BverError::new(
                ErrorCode::Timeout,
                Phase::Resolution,
                format!(
                    "{}: no answer from `{}` in time",
                    self.pointer,
                    self.keys.platform()
                ),
            )
            .with_ref(self.pointer.to_string())
        })
    }

    /// The answer frame: a verified answer, or the error it carries or its verification's.
    pub fn handle_message(&self, msg: Message, now_unix: u64) -> Result<RemoteAnswer, BverError> {
        match msg {
            Message::Resolved(r) if r.id == self.id => {
                verify_bytes(&self.keys, &r.kid, &r.answer.0, &r.sig, now_unix)?;
                // One level for the answer's own map (see the subscriber's event decoding).
                let depth = bver_contracts::cbor::MAX_JSON_DEPTH + 1;
                let answer: Answer =
                    bver_contracts::cbor::from_slice(&r.answer.0, depth).map_err(|e| {
                        crate::sign::bad_signature("undecodable", format!("signed answer: {e}"))
                    })?;
                if answer.id != self.id
                    || answer.origin != self.keys.platform()
                    || answer.pointer != self.pointer.to_string()
                {
                    return Err(crate::sign::bad_signature(
                        "answer_mismatch",
                        format!(
                            "the answer is about {} from `{}`, request {}",
                            answer.pointer, answer.origin, answer.id
                        ),
                    ));
                }
                Ok(RemoteAnswer {
                    answer,
                    bytes: r.answer.0,
                    kid: r.kid,
                    sig: r.sig,
                })
            }
            Message::Error(e) if e.id.is_none_or(|id| id == self.id) => {
                Err(e.to_bver().with_ref(self.pointer.to_string()))
            }
            other => Err(crate::proto::publisher::malformed(
                "protocol_violation",
                format!(
                    "unexpected message type {} on a resolve stream",
                    other.type_code()
                ),
            )),
        }
    }
}

/// Most entries a listing page carries, whatever the request says.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// A listing the driver must perform with [`crate::source::PointerSource::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// The namespace.
    pub namespace: String,
    /// The repo (`None`: the whole namespace).
    pub repo: Option<String>,
    /// The kind filter.
    pub kind: Option<String>,
    /// The page cursor.
    pub cursor: Option<String>,
    /// Most entries (capped at [`MAX_LIST_LIMIT`]).
    pub limit: u32,
}

/// The owner's side of one `list` stream: check the grant (`eager:resolve:NAMESPACE`), let
/// the driver list, answer `listed` or an `error` (`timeout` past the deadline).
#[derive(Debug)]
pub struct ListServer {
    peer: String,
    request: Option<(u64, Instant)>,
}

impl ListServer {
    /// A stream from `peer`.
    pub fn new(peer: impl Into<String>) -> Self {
        Self {
            peer: peer.into(),
            request: None,
        }
    }

    /// The request frame. `Err` is the `error` frame to send.
    pub fn handle_request(
        &mut self,
        req: crate::wire::List,
        grants: &dyn GrantVerifier,
        now: Instant,
        now_unix: u64,
    ) -> Result<ListRequest, Message> {
        let id = req.id;
        check_grant(
            grants,
            &req.grant,
            &self.peer,
            &format!("eager:resolve:{}", req.namespace),
            now_unix,
        )
        .map_err(|e| Message::error(&e, Some(id)))?;
        let budget = Duration::from_millis(u64::from(req.deadline_ms)).min(MAX_DEADLINE);
        self.request = Some((id, now + budget));
        Ok(ListRequest {
            namespace: req.namespace,
            repo: req.repo,
            kind: req.kind,
            cursor: req.cursor,
            limit: req.limit.clamp(1, MAX_LIST_LIMIT),
        })
    }

    /// The deadline of the current request.
    pub fn deadline(&self) -> Option<Instant> {
        self.request.map(|r| r.1)
    }

    /// The listing's result: the `listed` frame or an `error` frame.
    pub fn handle_listed(
        &mut self,
        result: Result<bver_resolver::Page<bver_resolver::Listed>, BverError>,
        now: Instant,
    ) -> Message {
        let Some((id, deadline)) = self.request.take() else {
            return Message::error(&BverError::internal("no list request in flight"), None);
        };
        if now > deadline {
            let e = BverError::new(
                ErrorCode::Timeout,
                Phase::Resolution,
                "the deadline passed before the listing was ready",
            );
            return Message::error(&e, Some(id));
        }
        match result {
            Ok(page) => Message::Listed(crate::wire::ListedMsg {
                id,
                items: page
                    .items
                    .into_iter()
                    .map(|l| crate::wire::ListedRef {
                        pointer: l.pointer.to_string(),
                        version: l.version,
                        kind: l.kind,
                        updated_at: l.updated_at,
                    })
                    .collect(),
                next: page.next,
            }),
            Err(e) => Message::error(&e, Some(id)),
        }
    }
}

/// The requester's side of a `list`: the request frame and the answer's check.
#[derive(Debug)]
pub struct ListClient {
    id: u64,
    namespace: String,
}

impl ListClient {
    /// A request `id`; returns the request frame to send.
    pub fn new(id: u64, request: ListRequest, grant: &str, budget: Duration) -> (Self, Message) {
        let namespace = request.namespace.clone();
        let msg = Message::List(crate::wire::List {
            id,
            namespace: request.namespace,
            repo: request.repo,
            kind: request.kind,
            cursor: request.cursor,
            limit: request.limit,
            deadline_ms: u32::try_from(budget.as_millis()).unwrap_or(u32::MAX),
            grant: grant.to_owned(),
        });
        (Self { id, namespace }, msg)
    }

    /// The answer frame: a page whose pointers all belong to the namespace asked, or the
    /// error it carries.
    pub fn handle_message(
        &self,
        msg: Message,
    ) -> Result<bver_resolver::Page<bver_resolver::Listed>, BverError> {
        match msg {
            Message::Listed(l) if l.id == self.id => {
                let mut items = Vec::with_capacity(l.items.len());
                for r in l.items {
                    let pointer = RefPtr::parse(&r.pointer)?;
                    if pointer.namespace() != self.namespace || pointer.has_path() {
                        return Err(crate::proto::publisher::malformed(
                            "answer_mismatch",
                            format!("a listing of `{}` names {pointer}", self.namespace),
                        ));
                    }
                    items.push(bver_resolver::Listed {
                        pointer,
                        version: r.version,
                        kind: r.kind,
                        updated_at: r.updated_at,
                    });
                }
                Ok(bver_resolver::Page {
                    items,
                    next: l.next,
                })
            }
            Message::Error(e) if e.id.is_none_or(|id| id == self.id) => Err(e.to_bver()),
            other => Err(crate::proto::publisher::malformed(
                "protocol_violation",
                format!(
                    "unexpected message type {} on a list stream",
                    other.type_code()
                ),
            )),
        }
    }
}
