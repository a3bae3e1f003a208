//! [`Rtnl`]: one rtnetlink connection in the network namespace the calling thread is in
//! when it is opened, and the requests the agent and the CNI plugin both make.

use std::net::IpAddr;
use std::sync::Arc;

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::RouteMessage;
use rtnetlink::{Handle, LinkUnspec};

use crate::Error;
use crate::dump::RouteDumps;
use crate::parse::RouteFields;

/// A handle on one rtnetlink connection (and a socket of its own for route dumps).
#[derive(Clone)]
pub struct Rtnl {
    handle: Handle,
    route_dumps: Arc<RouteDumps>,
}

/// What [`Rtnl::set_link`] changes on a device; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct LinkSettings<'a> {
    pub up: bool,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// `ip link set ... alias <text>`.
    pub alias: Option<&'a str>,
}

impl Rtnl {
    /// Opens a connection; its I/O runs on a spawned tokio task for as long as the handle
    /// lives.
    pub fn connect() -> Result<Rtnl, Error> {
        let (rtnl, conn) = Self::open()?;
        tokio::spawn(conn);
        Ok(rtnl)
    }

    /// Opens a connection and returns, beside the handle, the connection's I/O for the
    /// caller to run (and supervise: the handle is useless once it ends).
    pub fn open() -> Result<(Rtnl, impl Future<Output = ()> + Send + 'static), Error> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| Error::Other(format!("opening a netlink socket: {e}")))?;
        let route_dumps = Arc::new(RouteDumps::open()?);
        Ok((
            Rtnl {
                handle,
                route_dumps,
            },
            conn,
        ))
    }

    /// The rtnetlink handle, for requests only one user makes.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The device called `name`, if there is one.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>, Error> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await.map_err(Error::from) {
            Ok(link) => Ok(link),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every device.
    pub async fn links(&self) -> Result<Vec<LinkMessage>, Error> {
        let mut out = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(link) = links.try_next().await? {
            out.push(link);
        }
        Ok(out)
    }

    /// Changes a device's settings.
    pub async fn set_link(&self, index: u32, settings: &LinkSettings<'_>) -> Result<(), Error> {
        let mut msg = LinkUnspec::new_with_index(index);
        if settings.up {
            msg = msg.up();
        }
        if let Some(mtu) = settings.mtu {
            msg = msg.mtu(mtu);
        }
        if let Some(mac) = settings.mac {
            msg = msg.address(mac.to_vec());
        }
        let mut msg = msg.build();
        if let Some(alias) = settings.alias {
            msg.attributes
                .push(LinkAttribute::IfAlias(alias.to_string()));
        }
        Ok(self.handle.link().set(msg).execute().await?)
    }

    /// Deletes a device (NotFound when it is gone).
    pub async fn delete_link(&self, index: u32) -> Result<(), Error> {
        Ok(self.handle.link().del(index).execute().await?)
    }

    /// The address messages of every device, or of device `index`.
    pub async fn addresses(&self, index: Option<u32>) -> Result<Vec<AddressMessage>, Error> {
        let mut request = self.handle.address().get();
        if let Some(index) = index {
            request = request.set_link_index_filter(index);
        }
        let mut out = Vec::new();
        let mut addrs = request.execute();
        while let Some(msg) = addrs.try_next().await? {
            // Without strict checking the kernel ignores the filter.
            if index.is_none_or(|i| i == msg.header.index) {
                out.push(msg);
            }
        }
        Ok(out)
    }

    /// Adds `ip/prefix_len` to device `index` (replacing an identical one).
    pub async fn add_address(&self, index: u32, ip: IpAddr, prefix_len: u8) -> Result<(), Error> {
        Ok(self
            .handle
            .address()
            .add(index, ip, prefix_len)
            .replace()
            .execute()
            .await?)
    }

    /// Deletes an address as listed by [`addresses`](Self::addresses) (NotFound when gone).
    pub async fn delete_address(&self, msg: AddressMessage) -> Result<(), Error> {
        Ok(self.handle.address().del(msg).execute().await?)
    }

    /// The main table's routes of one family (`ipv6`, else IPv4).
    pub async fn routes(&self, ipv6: bool) -> Result<Vec<RouteFields>, Error> {
        let family = if ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        self.route_dumps.main_table(family).await
    }

    /// Adds or replaces a route.
    pub async fn replace_route(&self, msg: RouteMessage) -> Result<(), Error> {
        Ok(self.handle.route().add(msg).replace().execute().await?)
    }

    /// Deletes a route (NotFound when gone).
    pub async fn delete_route(&self, msg: RouteMessage) -> Result<(), Error> {
        Ok(self.handle.route().del(msg).execute().await?)
    }
}
