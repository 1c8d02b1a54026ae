//! A fleet: swapvisor nodes joined over ractor_cluster, reloaded all or nothing.
//!
//! Each node runs a ractor_cluster `NodeServer` (authenticated by a shared cookie) and one
//! agent actor in a process group that every node sees. Any node can coordinate a fleet
//! reload ([`Fleet::reload`]): it asks every agent to **prepare** the config (the node's
//! Supervisor builds it and holds it, touching nothing; see `SupervisorMsg::Prepare`), and only
//! if every node prepared the same fingerprint does it **commit** everywhere; otherwise it
//! **aborts** everywhere and nothing changed. A node whose commit rolls back (its own reload
//! failed to start) makes the coordinator return the nodes that already activated to the config
//! they ran before, so the fleet ends on one version. A node's part is its ordinary reload split
//! where the Candidate reports built, so every single-node guarantee holds on each node.
//!
//! The cluster port must not face untrusted networks: the cookie authenticates peers when they
//! connect (a challenge-response; the cookie itself is never sent), but the traffic after that
//! is neither encrypted nor integrity-protected.

mod agent;
mod gate;
mod messages;
mod reload;
mod report;
mod two_phase;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::{NodeServer, NodeServerMessage};

pub use messages::{
    CommitAnswer, CurrentConfig, NodeOutcome, NodeStatus, PrepareAnswer, PrepareOutcome,
};
pub use report::{
    CatchUp, FleetOutcome, FleetReloadAnswer, FleetStatus, NodeReport, PrepareStatus,
    PrepareVerdict,
};
pub use two_phase::TwoPhase;

use crate::runtime::Runtime;

/// How a node joins a fleet.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// Where this node accepts cluster connections (port 0: an ephemeral port).
    pub listen: SocketAddr,
    /// Other nodes to connect to; each connection also learns that node's peers.
    pub peers: Vec<SocketAddr>,
    /// The shared secret every node of the fleet has.
    pub cookie: String,
    /// How long a coordinator waits for each node's prepare and commit.
    pub call_timeout: Duration,
}

/// Why a node cannot join a fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The cluster address could not be bound.
    #[error("cannot listen for cluster connections on {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The node's actors could not be started.
    #[error("cannot start the cluster node: {0}")]
    Spawn(String),
    /// The cookie is too easy to guess (see the admin token's rule).
    #[error("{0}")]
    WeakCookie(String),
}

/// This node's membership of a fleet. Dropping it leaves the fleet.
pub struct Fleet {
    name: String,
    address: SocketAddr,
    node: ActorRef<NodeServerMessage>,
    agent: ActorRef<messages::AgentMsg>,
    accept: tokio::task::JoinHandle<()>,
    call_timeout: Duration,
    fleet_generation: Arc<AtomicU64>,
    /// One fleet reload at a time from this node (other coordinators are refused by the
    /// agents that a reload holds).
    coordinating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Joins `runtime` to a fleet: listens on `settings.listen`, starts this node's agent, and
    /// connects to each peer (a peer not up yet connects to this node when it starts).
    pub async fn join(runtime: Arc<Runtime>, settings: FleetSettings) -> Result<Fleet, FleetError> {
        crate::secret::check("the cluster cookie", &settings.cookie)
            .map_err(FleetError::WeakCookie)?;
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| FleetError::Bind {
                address: settings.listen,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| FleetError::Bind {
            address: settings.listen,
            source,
        })?;
        let name = address.to_string();
        // ractor_cluster always binds a listener of its own, which reads connections without
        // the gate: it gets an ephemeral port on loopback, and the node advertises the gated
        // address bound above instead (PortChanged), so peers that learn of this node connect
        // there.
        let loopback: std::net::IpAddr = match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        let server = NodeServer::new(
            0,
            settings.cookie.clone(),
            name.clone(),
            address.ip().to_string(),
            None,
            Some(ractor_cluster::node::NodeConnectionMode::Transitive),
        )
        .with_listen_addr(loopback);
        let (node, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| FleetError::Spawn(e.to_string()))?;
        let gate = Arc::new(gate::Gate::default());
        let subscribed = node
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "swapvisor-gate".into(),
                subscription: Box::new(gate::Authentications(gate.clone())),
            })
            .and_then(|()| {
                node.cast(NodeServerMessage::PortChanged {
                    port: address.port(),
                })
            });
        subscribed.map_err(|e| FleetError::Spawn(e.to_string()))?;
        let accept = tokio::spawn(accept_loop(listener, node.clone(), gate));
        let fleet_generation = Arc::new(AtomicU64::new(0));
        let args = agent::AgentArgs {
            name: name.clone(),
            runtime,
            fleet_generation: fleet_generation.clone(),
        };
        // Named after the node, a name that peers see on its remote reference too.
        let (agent, _) = Actor::spawn(Some(name.clone()), agent::Agent, args)
            .await
            .map_err(|e| FleetError::Spawn(e.to_string()))?;
        for peer in &settings.peers {
            if let Err(error) = ractor_cluster::client_connect(&node, *peer).await {
                tracing::warn!(%peer, %error, "cannot reach a fleet peer yet; it connects to this node when it starts");
            }
        }
        tracing::info!(cluster = %address, peers = settings.peers.len(), "joined the fleet");
        let fleet = Fleet {
            name,
            address,
            node,
            agent,
            accept,
            call_timeout: settings.call_timeout,
            fleet_generation,
            coordinating: tokio::sync::Mutex::new(()),
        };
        Ok(fleet)
    }

    /// Waits (up to `within`) for another node to be visible, then brings this node to the
    /// fleet's config if the fleet moved on while it was away. What a node does when it
    /// (re)joins; returns what it did.
    pub async fn catch_up(&self, within: Duration) -> CatchUp {
        let deadline = tokio::time::Instant::now() + within;
        while self.agents().len() < 2 {
            if tokio::time::Instant::now() >= deadline {
                return CatchUp::Alone;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.catch_up_now().await
    }

    /// This node's name in the fleet (its cluster address).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fleet generation this node last committed (0 before any fleet reload).
    pub fn fleet_generation(&self) -> u64 {
        self.fleet_generation.load(Ordering::SeqCst)
    }

    /// Where this node accepts cluster connections.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.accept.abort();
        self.agent.stop(None);
        self.node.stop(None);
    }
}

/// Hands every connection accepted on the operator's cluster address to the node server,
/// through the [gate](gate) that bounds it until it authenticates.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    node: ActorRef<NodeServerMessage>,
    gate: Arc<gate::Gate>,
) {
    loop {
        let (stream, peer_addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "cluster accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(local_addr) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peer = peer_addr.to_string();
        let (read, write) = stream.into_split();
        let Some(reader) = gate.admit(peer.clone(), read) else {
            tracing::debug!(%peer, limit = gate::MAX_UNAUTHENTICATED, "too many cluster connections in their handshake; closing this one");
            continue;
        };
        // Labelled with the peer's address: the node server reports the session under that
        // label once it authenticates, which is how the gate learns to let it through.
        let opened = NodeServerMessage::ConnectionOpenedExternal {
            stream: Box::new(gate::GatedStream {
                peer,
                local: local_addr.to_string(),
                reader,
                writer: write,
            }),
            is_server: true,
        };
        if node.cast(opened).is_err() {
            return;
        }
    }
}
