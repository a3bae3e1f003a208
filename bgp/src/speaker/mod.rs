//! The tokio speaker: one task owns every session, the RIB and the timers, and consumes one
//! typed inbox; [`Speaker`] is a cheap handle that sends it commands.
//!
//! ```text
//!  Speaker (handle, Clone) --Command--> ┌──────────────────────────────┐ --RouteEvent--> embedder
//!                                       │ speaker task                 │
//!  listener task --Accepted-----------> │  Session FSMs (fsm.rs)       │
//!  connect tasks --Connected/Failed---> │  Rib (rib/)                  │
//!  reader tasks  --Messages/Closed----> │  Timers                      │
//!                                       └──────────────────────────────┘
//!                                            │ bytes (one buffer per flush)
//!                                            v
//!                                       writer tasks (one write_all per flush)
//! ```

mod conn;
mod peer;
pub mod socket;
mod task;
mod timers;

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::config::{OriginAttrs, PeerConfig, SpeakerConfig};
use crate::events::{LearnedRoute, PathInfo, PeerStatus, RouteEvent};

/// Where the speaker task delivers [`RouteEvent`]s.
pub(crate) enum EventSink {
    PerEvent(mpsc::UnboundedSender<RouteEvent>),
    Batched(mpsc::UnboundedSender<Vec<RouteEvent>>),
}

impl EventSink {
    /// Sends one event; false when the receiver is gone.
    pub fn send(&self, ev: RouteEvent) -> bool {
        match self {
            EventSink::PerEvent(tx) => tx.send(ev).is_ok(),
            EventSink::Batched(tx) => tx.send(vec![ev]).is_ok(),
        }
    }

    /// Sends a batch of events in order; false when the receiver is gone.
    pub fn send_all(&self, evs: Vec<RouteEvent>) -> bool {
        match self {
            EventSink::PerEvent(tx) => evs.into_iter().all(|e| tx.send(e).is_ok()),
            EventSink::Batched(tx) => evs.is_empty() || tx.send(evs).is_ok(),
        }
    }
}

/// Commands from [`Speaker`] handles to the speaker task.
pub(crate) enum Command {
    AddPeer(PeerConfig, oneshot::Sender<Result<(), Error>>),
    UpdatePeer(PeerConfig, oneshot::Sender<Result<(), Error>>),
    RemovePeer(SocketAddr, oneshot::Sender<Result<(), Error>>),
    Originate(Vec<(IpNet, OriginAttrs)>),
    Withdraw(Vec<IpNet>),
    Path(IpAddr, bool),
    Status(oneshot::Sender<Vec<PeerStatus>>),
    Learned(oneshot::Sender<Vec<LearnedRoute>>),
    Explain(IpNet, oneshot::Sender<Vec<PathInfo>>),
    Shutdown(Option<String>, oneshot::Sender<()>),
}

/// Handle on a running BGP speaker. Cheap to clone; every clone talks to the same task.
/// When the last handle is dropped the speaker shuts down (Cease / Administrative
/// Shutdown to every peer).
#[derive(Clone)]
pub struct Speaker {
    tx: mpsc::UnboundedSender<Command>,
}

impl Speaker {
    /// Starts the speaker task (must be called inside a tokio runtime) and its listener.
    /// Returns the handle and the stream of [`RouteEvent`]s.
    pub fn start(
        cfg: SpeakerConfig,
    ) -> Result<(Speaker, mpsc::UnboundedReceiver<RouteEvent>), Error> {
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        Ok((Self::spawn(cfg, EventSink::PerEvent(ev_tx))?, ev_rx))
    }

    /// Like [`Speaker::start`], but events arrive in batches: one `Vec` per RIB batch
    /// (up to ~16k route changes), in order. Cheaper for consumers of large tables (one
    /// channel operation per batch instead of per route).
    pub fn start_batched(
        cfg: SpeakerConfig,
    ) -> Result<(Speaker, mpsc::UnboundedReceiver<Vec<RouteEvent>>), Error> {
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        Ok((Self::spawn(cfg, EventSink::Batched(ev_tx))?, ev_rx))
    }

    fn spawn(cfg: SpeakerConfig, events: EventSink) -> Result<Speaker, Error> {
        cfg.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::config(
                "runtime",
                "Speaker::start needs a tokio runtime",
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = task::Task::new(cfg, events)?;
        tokio::spawn(task.run(rx));
        Ok(Speaker { tx })
    }

    fn send(&self, c: Command) -> Result<(), Error> {
        self.tx.send(c).map_err(|_| Error::Stopped)
    }

    async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(f(tx))?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Adds a peer and starts its session.
    pub async fn add_peer(&self, cfg: PeerConfig) -> Result<(), Error> {
        cfg.validate()?;
        self.ask(|tx| Command::AddPeer(cfg, tx)).await?
    }

    /// Changes a peer's configuration live. Policies, next-hop handling and the
    /// route-reflector flag apply to the running session (export at once; a new import
    /// policy asks the peer for its routes again with ROUTE-REFRESH, or resets the session
    /// if it cannot); anything else restarts only this session.
    pub async fn update_peer(&self, cfg: PeerConfig) -> Result<(), Error> {
        cfg.validate()?;
        self.ask(|tx| Command::UpdatePeer(cfg, tx)).await?
    }

    /// Removes the peer at `address` (its IP and port: two sessions may share an IP)
    /// with Cease / Peer De-configured, and everything learned from it.
    pub async fn remove_peer(&self, address: SocketAddr) -> Result<(), Error> {
        self.ask(|tx| Command::RemovePeer(address, tx)).await?
    }

    /// Originates local routes (or changes their attributes).
    pub fn originate(&self, routes: Vec<(IpNet, OriginAttrs)>) -> Result<(), Error> {
        self.send(Command::Originate(routes))
    }

    /// Withdraws local routes.
    pub fn withdraw(&self, prefixes: Vec<IpNet>) -> Result<(), Error> {
        self.send(Command::Withdraw(prefixes))
    }

    /// A failure detector (BFD) says the forwarding path to `address` is down or back up.
    /// Down closes the session at once (Cease, BFD Down, RFC 9384), its routes withdrawn
    /// without graceful restart (RFC 5882 §4.3: the forwarding plane is gone), and keeps it
    /// closed, refusing the peer's connections; up starts it again. Unknown peers are
    /// ignored.
    pub fn set_path(&self, address: IpAddr, up: bool) -> Result<(), Error> {
        self.send(Command::Path(address, up))
    }

    /// Status of every peer, for `node status` tables.
    pub async fn peer_status(&self) -> Result<Vec<PeerStatus>, Error> {
        self.ask(Command::Status).await
    }

    /// Every learned best route (a snapshot to resync a consumer of the event stream).
    pub async fn learned_routes(&self) -> Result<Vec<LearnedRoute>, Error> {
        self.ask(Command::Learned).await
    }

    /// Every path of `prefix` with why it is or is not the best.
    pub async fn explain(&self, prefix: IpNet) -> Result<Vec<PathInfo>, Error> {
        self.ask(|tx| Command::Explain(prefix, tx)).await
    }

    /// Sends Cease / Administrative Shutdown (with an RFC 8203 message) to every peer, waits
    /// for those to be written, and stops the speaker.
    pub async fn shutdown(&self, message: Option<String>) -> Result<(), Error> {
        self.ask(|tx| Command::Shutdown(message, tx)).await
    }
}
