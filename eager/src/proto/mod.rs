//! The sans-IO protocol core: state machines that take decoded frames, read results and
//! time in, and give frames and requests out. No sockets, no clock, no async.
//!
//! - [`handshake`]: the control stream's `hello` (platform, protocol version, signed key
//!   announcements);
//! - [`publisher`]: serving one subscription (replay from a cursor, then live);
//! - [`subscriber`]: consuming one (verification, dedupe, cursor);
//! - [`resolve`]: remote resolution, both sides;
//! - [`backoff`]: reconnect delays with jitter.

pub mod backoff;
pub mod handshake;
pub mod publisher;
pub mod resolve;
pub mod subscriber;

#[cfg(test)]
mod tests;
