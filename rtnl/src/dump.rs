//! Main-table route dumps, read lean: a socket of their own asks the kernel for the main
//! table only (strict checking), and each reply message is read in place for the header
//! and the four attributes [`RouteFields`] holds. The shared connection would decode every
//! attribute of every message into owned values and pass each message through a channel,
//! which is most of a resync's time at tens of thousands of routes.

use std::cell::Cell;
use std::num::NonZeroI32;
use std::time::Duration;

use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteLwEnCapType, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{
    DecodeError, DoneBuffer, ErrorBuffer, ErrorMessage, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
    NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NlasIterator, ParseableParametrized,
};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
use tokio::sync::Mutex;

use crate::Error;
use crate::parse::{RouteFields, route_fields_of};

/// The route header's length (`struct rtmsg`); attributes follow it.
const ROUTE_HEADER_LEN: usize = 12;

/// The receive buffer: the kernel fills at most 32 KiB per dump message batch.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// The attributes a [`RouteFields`] is made of; the others are skipped unread.
const READ_ATTRIBUTES: [u16; 4] = [
    libc::RTA_DST,
    libc::RTA_GATEWAY,
    libc::RTA_OIF,
    libc::RTA_TABLE,
];

/// A netlink socket for route dumps, one dump at a time.
pub(crate) struct RouteDumps {
    socket: Mutex<DumpSocket>,
}

struct DumpSocket {
    socket: TokioSocket,
    sequence: u32,
    buffer: Vec<u8>,
    /// A dump asked for and not read to its end (its caller was cancelled, or a message
    /// of it was malformed): the kernel refuses the next one (EBUSY) until its rest has
    /// been read off the socket.
    unfinished: Option<u32>,
}

/// How often a dump the kernel marks inconsistent (the table changed while it was being
/// read, `NLM_F_DUMP_INTR`) is asked for again; the last one is kept whatever it says.
const DUMP_ATTEMPTS: usize = 3;

/// How long the rest of an unfinished dump may take to arrive: the kernel queues its next
/// batch as soon as one is read, so a silent socket has nothing left.
const DRAIN_SILENCE: Duration = Duration::from_millis(200);

/// What the messages read so far hold.
#[derive(Debug, Default)]
struct Dumped {
    routes: Vec<RouteFields>,
    /// The kernel marked a message inconsistent (`NLM_F_DUMP_INTR`).
    interrupted: bool,
}

/// Where one received batch leaves the dump.
#[derive(Debug)]
enum Batch {
    More,
    Done,
    /// The kernel ended the dump with an error (`NLMSG_ERROR`, or `NLMSG_DONE` carrying
    /// a negative errno, as a dump that fails part way ends).
    Failed(Error),
}

impl RouteDumps {
    /// Opens the socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<RouteDumps, Error> {
        let fail = |e: std::io::Error| Error::Other(format!("opening a netlink socket: {e}"));
        let mut socket = TokioSocket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.socket_mut().bind_auto().map_err(fail)?;
        socket
            .socket_ref()
            .connect(&SocketAddr::new(0, 0))
            .map_err(fail)?;
        // Without strict checking (kernels before 4.20) the kernel dumps every table and
        // the readers below keep the main table's routes only.
        let _ = socket.socket_ref().set_netlink_get_strict_chk(true);
        Ok(RouteDumps {
            socket: Mutex::new(DumpSocket {
                socket,
                sequence: 0,
                buffer: Vec::with_capacity(RECEIVE_BUFFER),
                unfinished: None,
            }),
        })
    }

    /// The main table's routes of one family.
    pub(crate) async fn main_table(
        &self,
        family: AddressFamily,
    ) -> Result<Vec<RouteFields>, Error> {
        let mut s = self.socket.lock().await;
        if let Some(sequence) = s.unfinished {
            s.read_off(sequence).await?;
        }
        let mut attempts = 1;
        loop {
            let dumped = s.dump(family).await?;
            if !dumped.interrupted || attempts == DUMP_ATTEMPTS {
                return Ok(dumped.routes);
            }
            attempts += 1;
        }
    }
}

impl DumpSocket {
    async fn receive(&mut self) -> Result<(), Error> {
        self.buffer.clear();
        self.socket
            .recv(&mut self.buffer)
            .await
            .map(|_| ())
            .map_err(|e| Error::Other(format!("reading the routes: {e}")))
    }

    /// One dump, read to its end.
    async fn dump(&mut self, family: AddressFamily) -> Result<Dumped, Error> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        self.socket
            .send(&dump_request(family, sequence))
            .await
            .map_err(|e| Error::Other(format!("asking for the routes: {e}")))?;
        self.unfinished = Some(sequence);
        let mut dumped = Dumped::default();
        // A receive or a batch that fails leaves the dump unfinished, read off next time.
        let ended = loop {
            self.receive().await?;
            match read_batch(&self.buffer, sequence, &mut dumped)? {
                Batch::More => {}
                Batch::Done => break Ok(()),
                Batch::Failed(e) => break Err(e),
            }
        };
        self.unfinished = None;
        ended.map(|()| dumped)
    }

    /// Reads the rest of dump `sequence` off the socket, unparsed.
    async fn read_off(&mut self, sequence: u32) -> Result<(), Error> {
        let drained = loop {
            match tokio::time::timeout(DRAIN_SILENCE, self.receive()).await {
                Ok(Ok(())) if !ends_dump(&self.buffer, sequence) => {}
                Ok(received) => break received,
                // Silence: nothing was left.
                Err(_) => break Ok(()),
            }
        };
        self.unfinished = None;
        drained
    }
}

/// `RTM_GETROUTE` for a dump of `family`'s main table.
fn dump_request(family: AddressFamily, sequence: u32) -> Vec<u8> {
    let mut route = RouteMessage::default();
    route.header.address_family = family;
    route.header.table = RouteHeader::RT_TABLE_MAIN;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetRoute(route)),
    );
    msg.finalize();
    let mut bytes = vec![0; msg.buffer_len()];
    msg.serialize(&mut bytes);
    bytes
}

/// The messages of one received batch, in order; an `Err` ends it (a message that does not
/// read leaves nothing after it to find).
fn messages(mut bytes: &[u8]) -> impl Iterator<Item = Result<NetlinkBuffer<&[u8]>, DecodeError>> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let msg = NetlinkBuffer::new_checked(bytes);
        let length = match &msg {
            Ok(msg) => (msg.length() as usize).next_multiple_of(4).min(bytes.len()),
            Err(_) => bytes.len(),
        };
        bytes = &bytes[length..];
        Some(msg)
    })
}

/// Reads one received batch of dump messages into `dumped`. Messages of another sequence
/// (an abandoned dump's) are skipped, as are route messages that do not read as a prefix
/// route; an `Err` is a batch that cannot be read at all.
fn read_batch(bytes: &[u8], sequence: u32, dumped: &mut Dumped) -> Result<Batch, Error> {
    let malformed = |e: DecodeError| Error::Other(format!("a malformed route dump message: {e}"));
    for msg in messages(bytes) {
        let msg = msg.map_err(malformed)?;
        if msg.sequence_number() != sequence {
            continue;
        }
        dumped.interrupted |= msg.flags() & NLM_F_DUMP_INTR != 0;
        match msg.message_type() {
            NLMSG_DONE => {
                // The kernel's netlink_dump_done: the dump's return code, 0 when done.
                let code = DoneBuffer::new_checked(msg.payload()).map_or(0, |d| d.code());
                return Ok(match NonZeroI32::new(code) {
                    Some(code) if code.get() < 0 => Batch::Failed(kernel_error(code)),
                    _ => Batch::Done,
                });
            }
            NLMSG_ERROR => {
                let error = ErrorBuffer::new_checked(msg.payload()).map_err(malformed)?;
                if let Some(code) = error.code() {
                    return Ok(Batch::Failed(kernel_error(code)));
                }
            }
            libc::RTM_NEWROUTE => dumped.routes.extend(read_route(msg.payload())),
            _ => {}
        }
    }
    Ok(Batch::More)
}

/// An errno from the kernel (negative), classified as a request's error is.
fn kernel_error(code: NonZeroI32) -> Error {
    let mut error = ErrorMessage::default();
    error.code = Some(code);
    Error::from(rtnetlink::Error::NetlinkError(error))
}

/// True when a batch holds the end (`NLMSG_DONE` or `NLMSG_ERROR`) of dump `sequence`;
/// read by the headers alone, up to the first one that does not read.
fn ends_dump(bytes: &[u8], sequence: u32) -> bool {
    messages(bytes).map_while(Result::ok).any(|msg| {
        msg.sequence_number() == sequence && matches!(msg.message_type(), NLMSG_DONE | NLMSG_ERROR)
    })
}

/// The fields of one `RTM_NEWROUTE` payload, read in place.
fn read_route(payload: &[u8]) -> Option<RouteFields> {
    let header = RouteHeader::parse(payload).ok()?;
    let param = (
        header.address_family,
        header.kind,
        RouteLwEnCapType::default(),
    );
    // A message with an attribute that does not read is left out whole, as a full
    // decode would leave it.
    let malformed = Cell::new(false);
    let attributes = NlasIterator::new(payload.get(ROUTE_HEADER_LEN..)?)
        .map_while(|nla| nla.map_err(|_| malformed.set(true)).ok())
        .filter(|nla| READ_ATTRIBUTES.contains(&nla.kind()))
        .map_while(|nla| {
            RouteAttribute::parse_with_param(&nla, param)
                .map_err(|_| malformed.set(true))
                .ok()
        });
    let fields = route_fields_of(&header, attributes);
    if malformed.get() {
        return None;
    }
    fields.filter(RouteFields::in_main_table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::destination;
    use rtnetlink::packet_core::Emitable;
    use std::net::IpAddr;

    /// One netlink message of `kind` and `sequence` carrying `payload`.
    fn message(kind: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let length = 16 + payload.len();
        let mut bytes = Vec::new();
        bytes.extend((length as u32).to_ne_bytes());
        bytes.extend(kind.to_ne_bytes());
        bytes.extend(2u16.to_ne_bytes()); // NLM_F_MULTI
        bytes.extend(sequence.to_ne_bytes());
        bytes.extend(0u32.to_ne_bytes());
        bytes.extend(payload);
        bytes.resize(length.next_multiple_of(4), 0);
        bytes
    }

    fn route_payload(route: &RouteMessage) -> Vec<u8> {
        let mut bytes = vec![0; route.buffer_len()];
        route.emit(&mut bytes);
        bytes
    }

    fn gateway_route(dst: &str, table: u8) -> RouteMessage {
        let mut route = destination(dst.parse().expect("cidr"))
            .expect("builder")
            .gateway("10.0.0.2".parse::<IpAddr>().expect("ip"))
            .expect("gateway")
            .output_interface(3)
            .build();
        route.header.table = table;
        route
    }

    /// `message` with flags of its own.
    fn flagged(kind: u16, sequence: u32, flags: u16, payload: &[u8]) -> Vec<u8> {
        let mut bytes = message(kind, sequence, payload);
        bytes[6..8].copy_from_slice(&flags.to_ne_bytes());
        bytes
    }

    fn route(dst: &str, table: u8) -> Vec<u8> {
        message(
            libc::RTM_NEWROUTE,
            7,
            &route_payload(&gateway_route(dst, table)),
        )
    }

    #[test]
    fn a_batch_reads_the_main_tables_routes_until_done() {
        let mut batch = route("10.1.0.0/26", RouteHeader::RT_TABLE_MAIN);
        batch.extend(route("10.2.0.0/26", 255));
        let mut dumped = Dumped::default();
        let more = read_batch(&batch, 7, &mut dumped).expect("batch");
        assert!(matches!(more, Batch::More), "{more:?}");
        batch.extend(message(NLMSG_DONE, 7, &0i32.to_ne_bytes()));
        let mut dumped = Dumped::default();
        let done = read_batch(&batch, 7, &mut dumped).expect("batch");
        assert!(matches!(done, Batch::Done), "{done:?}");
        let out = &dumped.routes;
        assert_eq!(out.len(), 1, "the local table's route is left out: {out:?}");
        assert_eq!(out[0].dst.to_string(), "10.1.0.0/26");
        assert_eq!(out[0].gateway, Some("10.0.0.2".parse().expect("ip")));
        assert_eq!(out[0].oif, Some(3));
        assert!(!dumped.interrupted);
    }

    #[test]
    fn an_abandoned_dumps_messages_are_skipped_and_end_only_it() {
        let mut batch = message(libc::RTM_NEWROUTE, 6, &[0; 12]);
        batch.extend(message(NLMSG_DONE, 6, &0i32.to_ne_bytes()));
        let mut dumped = Dumped::default();
        let more = read_batch(&batch, 7, &mut dumped).expect("batch");
        assert!(matches!(more, Batch::More), "{more:?}");
        assert!(dumped.routes.is_empty());
        assert!(ends_dump(&batch, 6));
        assert!(!ends_dump(&batch, 7));
        assert!(!ends_dump(&batch[..10], 6), "a cut header reads as no end");
    }

    /// How a batch of dump 7 ends.
    fn outcome(batch: &[u8]) -> Batch {
        read_batch(batch, 7, &mut Dumped::default()).expect("batch")
    }

    #[test]
    fn a_dump_error_is_classified_by_errno() {
        let mut payload = (-libc::EPERM).to_ne_bytes().to_vec();
        payload.extend(message(libc::RTM_GETROUTE, 7, &[0; 12]));
        let failed = outcome(&message(NLMSG_ERROR, 7, &payload));
        assert!(
            matches!(failed, Batch::Failed(Error::Other(_))),
            "{failed:?}"
        );
        let payload = [(-libc::ENODEV).to_ne_bytes().to_vec(), vec![0; 16]].concat();
        let failed = outcome(&message(NLMSG_ERROR, 7, &payload));
        assert!(
            matches!(failed, Batch::Failed(Error::NotFound(_))),
            "{failed:?}"
        );
    }

    #[test]
    fn a_dump_that_fails_part_way_ends_in_an_error_not_a_short_table() {
        // The kernel ends a dump that fails after its start with NLMSG_DONE carrying the
        // errno (netlink_dump_done), after the routes it did send.
        let mut batch = route("10.1.0.0/26", RouteHeader::RT_TABLE_MAIN);
        batch.extend(message(NLMSG_DONE, 7, &(-libc::EINVAL).to_ne_bytes()));
        let failed = outcome(&batch);
        assert!(
            matches!(failed, Batch::Failed(Error::Other(_))),
            "{failed:?}"
        );
    }

    #[test]
    fn a_dump_marked_inconsistent_says_so() {
        let mut batch = route("10.1.0.0/26", RouteHeader::RT_TABLE_MAIN);
        batch.extend(flagged(
            libc::RTM_NEWROUTE,
            7,
            2 | NLM_F_DUMP_INTR,
            &batch.clone()[16..],
        ));
        let mut dumped = Dumped::default();
        read_batch(&batch, 7, &mut dumped).expect("batch");
        assert!(dumped.interrupted);
        assert_eq!(dumped.routes.len(), 2);
    }

    #[test]
    fn a_route_with_an_attribute_that_does_not_read_is_left_out() {
        let mut payload = route_payload(&gateway_route("10.1.0.0/26", RouteHeader::RT_TABLE_MAIN));
        // An attribute claiming more bytes than the message holds.
        payload.extend(200u16.to_ne_bytes());
        payload.extend(libc::RTA_PRIORITY.to_ne_bytes());
        let batch = message(libc::RTM_NEWROUTE, 7, &payload);
        let mut dumped = Dumped::default();
        read_batch(&batch, 7, &mut dumped).expect("batch");
        assert!(dumped.routes.is_empty(), "{:?}", dumped.routes);
    }

    #[test]
    fn a_truncated_message_is_an_error_not_a_panic() {
        let mut batch = message(libc::RTM_NEWROUTE, 7, &[0; 12]);
        batch.truncate(10);
        assert!(read_batch(&batch, 7, &mut Dumped::default()).is_err());
    }
}
