//! The legacy tc (`cls_bpf`) filters of an interface's `clsact` hook, read
//! over rtnetlink (`RTM_GETTFILTER` dump), as `tc filter show dev X
//! ingress` lists them: aya attaches, replaces and deletes such filters but
//! cannot list them, and the loader needs the list to check what runs
//! (the `BPF_PROG_QUERY` of tcx has no tc equivalent), to tell its own
//! filter from another tool's, and to detach only a filter that still runs
//! the program it pinned.
//!
//! Message layouts are those of `include/uapi/linux/rtnetlink.h` and
//! `pkt_cls.h` (`struct tcmsg`, `TCA_KIND`, `TCA_OPTIONS`, `TCA_BPF_NAME`,
//! `TCA_BPF_ID`); building and parsing are pure functions, tested without
//! root.

use std::io;
use std::os::fd::OwnedFd;

/// `RTM_NEWTFILTER`: a filter in a dump's answer.
const RTM_NEWTFILTER: u16 = 44;
/// `RTM_GETTFILTER`.
const RTM_GETTFILTER: u16 = 46;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HDR: usize = 16;
const TCMSG: usize = 20;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;
/// `NLA_TYPE_MASK`: an attribute's type without its nested/byte-order bits.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Bound on one dump's answer: a pod interface holds a filter or two; a
/// kernel that answered more is cut off with an error, not buffered.
const MAX_ANSWER: usize = 4 << 20;

/// Which `clsact` hook: `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)` or
/// `TC_H_MIN_EGRESS` (`pkt_sched.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Packets the interface receives.
    Ingress,
    /// Packets the interface sends.
    Egress,
}

impl Hook {
    fn parent(self) -> u32 {
        match self {
            Hook::Ingress => 0xffff_fff2,
            Hook::Egress => 0xffff_fff3,
        }
    }
}

/// One `cls_bpf` filter of a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Its priority (`pref`): filters run in increasing priority.
    pub priority: u16,
    /// Its handle within the priority.
    pub handle: u32,
    /// The name given at attach (`TCA_BPF_NAME`), if any.
    pub name: Option<String>,
    /// The id of the program it runs.
    pub program_id: u32,
}

/// The request that dumps the filters of `hook` on interface `ifindex`.
fn dump_request(ifindex: u32, hook: Hook) -> Vec<u8> {
    let len = (NLMSG_HDR + TCMSG) as u32;
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&RTM_GETTFILTER.to_ne_bytes());
    out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    out.extend_from_slice(&[0; 4]); // family AF_UNSPEC, padding
    out.extend_from_slice(&ifindex.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // handle: all
    out.extend_from_slice(&hook.parent().to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // info: every priority and protocol
    out
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// The attributes in `bytes`: `(type, payload)`, 4-byte aligned; `None`
/// where one overruns its buffer.
fn attributes(mut bytes: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = usize::from(u16_at(bytes, 0)?);
        let kind = u16_at(bytes, 2)? & NLA_TYPE_MASK;
        let payload = bytes.get(4..len)?;
        out.push((kind, payload));
        bytes = bytes.get(len.checked_next_multiple_of(4)?.min(bytes.len())..)?;
    }
    Some(out)
}

/// The `cls_bpf` filter a `RTM_NEWTFILTER` message's payload describes;
/// `None` for anything else (the head of a priority, another kind).
fn filter_of(payload: &[u8]) -> Option<Filter> {
    let handle = u32_at(payload, 8)?;
    let info = u32_at(payload, 16)?;
    let attrs = attributes(payload.get(TCMSG..)?)?;
    let kind = attrs.iter().find(|(t, _)| *t == TCA_KIND)?.1;
    if kind.split(|b| *b == 0).next() != Some(b"bpf".as_slice()) {
        return None;
    }
    let options = attributes(attrs.iter().find(|(t, _)| *t == TCA_OPTIONS)?.1)?;
    let program_id = u32_at(options.iter().find(|(t, _)| *t == TCA_BPF_ID)?.1, 0)?;
    let name = options.iter().find(|(t, _)| *t == TCA_BPF_NAME).map(|(_, name)| {
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        String::from_utf8_lossy(name).into_owned()
    });
    Some(Filter { priority: (info >> 16) as u16, handle, name, program_id })
}

/// What one datagram of a dump's answer says: its filters, and whether
/// the dump is done.
fn parse_answer(mut bytes: &[u8], out: &mut Vec<Filter>) -> io::Result<bool> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "a malformed rtnetlink answer");
    while bytes.len() >= NLMSG_HDR {
        let len = u32_at(bytes, 0).ok_or_else(malformed)? as usize;
        let kind = u16_at(bytes, 4).ok_or_else(malformed)?;
        let payload = bytes.get(NLMSG_HDR..len).ok_or_else(malformed)?;
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = u32_at(payload, 0).ok_or_else(malformed)? as i32;
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
            }
            RTM_NEWTFILTER => out.extend(filter_of(payload)),
            _ => {}
        }
        bytes = bytes.get(len.checked_next_multiple_of(4).ok_or_else(malformed)?.min(bytes.len())..).unwrap_or(&[]);
    }
    Ok(false)
}

/// The index of interface `interface` in the caller's network namespace
/// (`SIOCGIFINDEX` on `socket`, as `if_nametoindex(3)`: `/sys/class/net`
/// shows the namespace sysfs was mounted in, not the caller's). No such
/// interface is `NotFound`.
fn ifindex(socket: &OwnedFd, interface: &str) -> io::Result<u32> {
    rustix::net::netdevice::name_to_index(socket, interface).map_err(|e| {
        let e = io::Error::from(e);
        if e.raw_os_error() == Some(libc::ENODEV) {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface `{interface}`"))
        } else {
            e
        }
    })
}

/// The `cls_bpf` filters of `hook` on `interface`, in the order they run
/// (priority, then handle). A hook without a `clsact` qdisc has none.
pub fn list(interface: &str, hook: Hook) -> io::Result<Vec<Filter>> {
    use rustix::net::{recv, send, socket, AddressFamily, RecvFlags, SendFlags, SocketType};
    // Protocol 0 is `NETLINK_ROUTE`.
    let socket = socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    let index = ifindex(&socket, interface)?;
    send(&socket, &dump_request(index, hook), SendFlags::empty())?;
    let mut filters = Vec::new();
    let mut buffer = vec![0u8; 64 << 10];
    let mut read = 0usize;
    loop {
        let (got, _) = recv(&socket, &mut buffer[..], RecvFlags::empty())?;
        read = read.saturating_add(got);
        if read > MAX_ANSWER {
            return Err(io::Error::other(format!("the filters of `{interface}` are more than {MAX_ANSWER} bytes")));
        }
        if parse_answer(&buffer[..got], &mut filters)? {
            break;
        }
    }
    filters.sort_by_key(|f| (f.priority, f.handle));
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = ((NLMSG_HDR + payload.len()) as u32).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(payload);
        out
    }

    fn filter_message(priority: u16, handle: u32, kind: &[u8], options: &[u8]) -> Vec<u8> {
        let mut tcmsg = vec![0; 8];
        tcmsg.extend_from_slice(&handle.to_ne_bytes());
        tcmsg.extend_from_slice(&Hook::Ingress.parent().to_ne_bytes());
        tcmsg.extend_from_slice(&((u32::from(priority) << 16) | 0x0300).to_ne_bytes());
        tcmsg.extend(attribute(TCA_KIND, kind));
        if !options.is_empty() {
            tcmsg.extend(attribute(TCA_OPTIONS | 0x8000, options));
        }
        message(RTM_NEWTFILTER, &tcmsg)
    }

    #[test]
    fn the_request_dumps_one_hook_of_one_interface() {
        let request = dump_request(7, Hook::Egress);
        assert_eq!(request.len(), 36);
        assert_eq!(u32_at(&request, 0), Some(36));
        assert_eq!(u16_at(&request, 4), Some(RTM_GETTFILTER));
        assert_eq!(u16_at(&request, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(u32_at(&request, 20), Some(7));
        assert_eq!(u32_at(&request, 28), Some(0xffff_fff3));
    }

    #[test]
    fn an_answer_lists_bpf_filters_and_skips_the_rest() {
        let mut options = attribute(TCA_BPF_NAME, b"from_container\0");
        options.extend(attribute(TCA_BPF_ID, &42u32.to_ne_bytes()));
        let mut answer = filter_message(1, 0, b"bpf\0", &[]); // the priority's head
        answer.extend(filter_message(1, 1, b"bpf\0", &options));
        answer.extend(filter_message(2, 1, b"u32\0", &attribute(1, &[0; 4])));
        answer.extend(message(NLMSG_DONE, &0u32.to_ne_bytes()));
        let mut filters = Vec::new();
        assert!(parse_answer(&answer, &mut filters).unwrap());
        assert_eq!(filters, [Filter { priority: 1, handle: 1, name: Some("from_container".into()), program_id: 42 }]);
    }

    #[test]
    fn an_error_answer_is_an_error_and_a_truncated_one_is_refused() {
        let error = message(NLMSG_ERROR, &(-19i32).to_ne_bytes());
        assert_eq!(parse_answer(&error, &mut Vec::new()).unwrap_err().raw_os_error(), Some(19));
        let mut cut = filter_message(1, 1, b"bpf\0", &attribute(TCA_BPF_ID, &1u32.to_ne_bytes()));
        cut.truncate(cut.len() - 6);
        assert!(parse_answer(&cut, &mut Vec::new()).is_err());
        // A lying attribute length inside a message is no filter, not a panic.
        let mut lying = filter_message(1, 1, b"bpf\0", &attribute(TCA_BPF_ID, &1u32.to_ne_bytes()));
        let at = NLMSG_HDR + TCMSG;
        lying[at..at + 2].copy_from_slice(&500u16.to_ne_bytes());
        let mut filters = Vec::new();
        assert!(!parse_answer(&lying, &mut filters).unwrap());
        assert!(filters.is_empty());
    }
}
