//! The quinn/rustls driver: the only module that does I/O. It binds a QUIC endpoint with
//! the platform's certificate ([`tls`]), dials and accepts peers, and runs the protocol core
//! over streams ([`endpoint`]); [`adapter`] is the EAGER resolver adapter.

pub mod adapter;
pub mod endpoint;
pub mod tls;

pub use adapter::EagerAdapter;
pub use endpoint::{
    DEFAULT_IDLE_TIMEOUT, EagerConfig, EagerEndpoint, PeerConfig, Services, SubscriptionHandle,
};
pub use tls::{Endorsement, PeerPins};
