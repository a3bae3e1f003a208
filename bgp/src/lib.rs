//! An embeddable BGP-4 speaker (placeholder docs, filled in below as the crate grows).

pub mod config;
pub mod error;
pub mod events;
pub mod fsm;
pub mod policy;
pub mod prefix;
pub mod rib;
pub mod speaker;
pub mod wire;

pub use config::{NextHopMode, OriginAttrs, PeerConfig, SpeakerConfig};
pub use error::Error;
pub use events::{LearnedRoute, PathInfo, PeerStatus, RouteEvent};
pub use fsm::State;
pub use policy::Policy;
pub use prefix::{Afi, Prefix, Prefix4, Prefix6, PrefixKey};
pub use speaker::Speaker;
