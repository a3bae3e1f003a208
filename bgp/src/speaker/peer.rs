//! One configured peer inside the speaker task: its configuration, its session FSM (and a
//! second one while an inbound connection collides with ours), its connection and
//! connect attempt, and what the status table shows.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::task::AbortHandle;

use super::conn::Conn;
use super::socket::ConnectParams;
use crate::config::{LimitAction, PeerConfig, SpeakerConfig};
use crate::events::PeerStatus;
use crate::fsm::{Session, SessionConfig, State};
use crate::graceful::Promise;
use crate::prefix::Afi;
use crate::rib::Rib;
use crate::wire::UpdateCtx;

pub(crate) struct Peer {
    pub idx: u16,
    pub cfg: PeerConfig,
    pub main: Session,
    pub main_conn: Option<Conn>,
    /// A colliding inbound connection and its session (RFC 4271 §6.8).
    pub second: Option<(Session, Conn)>,
    /// The outbound connect attempt in flight.
    pub attempt: Option<(u64, AbortHandle)>,
    pub since: SystemTime,
    pub shown: State,
    /// What the peer's last Established session promised for a restart (graceful restart).
    pub graceful: Promise,
    pub route_refresh: bool,
    /// When each family was last re-advertised for a ROUTE-REFRESH, and the families whose
    /// refresh waits for the rate limit.
    pub refreshed: Vec<(Afi, std::time::Instant)>,
    pub refresh_due: Vec<Afi>,
    /// The import limit's action took the session down for good (action disable): it
    /// stays down until the peer is reconfigured.
    pub disabled: bool,
    /// A failure detector (BFD) says the path is down: the session stays closed.
    pub path_down: bool,
}

pub(crate) fn session_config(spk: &SpeakerConfig, p: &PeerConfig) -> SessionConfig {
    let gr = p.graceful_restart_time.unwrap_or(spk.graceful_restart_time);
    SessionConfig {
        local_as: p.effective_local_as(spk.local_as),
        remote_as: p.remote_as,
        router_id: spk.router_id,
        hold_time: p.hold_time,
        keepalive_time: p.keepalive_time,
        connect_retry: Duration::from_secs(p.connect_retry_time as u64),
        passive: p.passive,
        families: p.families.clone(),
        graceful_restart: (gr > 0).then_some((gr, spk.restarting)),
        idle_hold_min: Duration::from_secs(p.error_wait_time.0 as u64),
        idle_hold_max: Duration::from_secs(p.error_wait_time.1.max(p.error_wait_time.0) as u64),
    }
}

impl Peer {
    pub fn new(idx: u16, cfg: PeerConfig, spk: &SpeakerConfig) -> Peer {
        Peer {
            idx,
            main: Session::new(session_config(spk, &cfg)),
            cfg,
            main_conn: None,
            second: None,
            attempt: None,
            since: SystemTime::now(),
            shown: State::Idle,
            graceful: Promise::default(),
            route_refresh: false,
            refreshed: Vec::new(),
            refresh_due: Vec::new(),
            disabled: false,
            path_down: false,
        }
    }

    pub fn update_ctx(&self, spk: &SpeakerConfig) -> UpdateCtx {
        UpdateCtx {
            ebgp: self.cfg.is_ebgp(spk.local_as),
            peer_as: self.cfg.remote_as,
        }
    }

    pub fn connect_params(&self) -> ConnectParams {
        ConnectParams {
            remote: SocketAddr::new(self.cfg.address, self.cfg.port),
            local: self.cfg.local_address,
            password: self.cfg.password.clone(),
            ttl_security: self.cfg.ttl_security,
            timeout: Duration::from_secs(self.cfg.connect_retry_time.max(1) as u64),
        }
    }

    pub fn status(&self, rib: &Rib) -> PeerStatus {
        let rp = rib.peer(self.idx);
        let c = rp.map(|p| p.counters).unwrap_or_default();
        PeerStatus {
            name: self.cfg.name.clone(),
            address: self.cfg.address,
            port: self.cfg.port,
            remote_as: self.cfg.remote_as,
            state: self.main.state(),
            since: self.since,
            last_error: self.main.last_error().map(str::to_owned),
            peer_router_id: self
                .main
                .negotiated()
                .map(|n| n.peer_router_id)
                .or(rp.map(|p| p.router_id).filter(|r| !r.is_unspecified())),
            prefixes_received: c.received,
            prefixes_accepted: c.accepted,
            prefixes_advertised: rp.map_or(0, |p| p.advertised()),
            prefixes_stale: c.stale,
            note: if self.path_down {
                Some("BFD down: waiting for the path".to_string())
            } else {
                self.limit_note(rp)
            },
        }
    }

    /// What `node status` says of an import limit that was reached.
    fn limit_note(&self, rp: Option<&crate::rib::RibPeer>) -> Option<String> {
        let rp = rp?;
        let limit = self.cfg.import_limit?;
        if !rp.limit_reported {
            return None;
        }
        let max = limit.max;
        Some(match limit.action {
            LimitAction::Warn => format!("import limit {max} exceeded"),
            LimitAction::Block => format!("import limit {max} reached: further routes refused"),
            LimitAction::Restart => format!("import limit {max} exceeded: session restarted"),
            LimitAction::Disable => format!("import limit {max} exceeded: session disabled"),
        })
    }
}
