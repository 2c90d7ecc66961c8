//! Which IP addresses an outgoing request may reach: the classifier of internal addresses
//! and the networks an operator may allow all the same.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Whether `ip` is not a public unicast address: loopback, private, link-local, shared
/// (100.64/10), multicast, unspecified or otherwise reserved, IPv6 unique-local and
/// site-local, documentation and benchmarking ranges, and the IPv6 forms that carry an IPv4
/// address (mapped, compatible, NAT64, 6to4) when the address they carry is one of those.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

/// The IPv4 ranges no outgoing request to an outside address may reach.
const INTERNAL_V4: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network", unspecified
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (carrier-grade NAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local (cloud metadata services)
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation
    ([203, 0, 113, 0], 24),  // documentation
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, broadcast
];

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    INTERNAL_V4
        .iter()
        .any(|(net, prefix)| within(bits.into(), u32::from_be_bytes(*net).into(), *prefix, 32))
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_internal_v4(v4);
    }
    let bits = u128::from(ip);
    let segments = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || within(bits, 0, 96, 128) // the rest of ::/96 (compatible forms of :: and ::1)
        || segments[0] & 0xfe00 == 0xfc00 // unique local fc00::/7
        || segments[0] & 0xffc0 == 0xfe80 // link-local fe80::/10
        || segments[0] & 0xffc0 == 0xfec0 // site-local fec0::/10
        || segments[0] & 0xff00 == 0xff00 // multicast ff00::/8
        || within(bits, 0x0100_u128 << 112, 64, 128) // discard 100::/64
        || within(bits, 0x0064_ff9b_0001_u128 << 80, 48, 128) // local NAT64 64:ff9b:1::/48
        || within(bits, 0x2001_0db8_u128 << 96, 32, 128) // documentation 2001:db8::/32
        || within(bits, 0x2001_u128 << 112, 23, 128) // IETF protocol assignments (Teredo, ...)
        || within(bits, 0x3fff_u128 << 112, 20, 128) // documentation 3fff::/20
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, not `::` or `::1`), NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some(mapped);
    }
    if within(bits, 0, 96, 128) && bits > 1 {
        return Some(low);
    }
    if within(bits, 0x0064_ff9b_u128 << 96, 96, 128) {
        return Some(low);
    }
    if ip.segments()[0] == 0x2002 {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

/// Whether the top `prefix` of `width` bits of `value` equal those of `net`.
fn within(value: u128, net: u128, prefix: u8, width: u8) -> bool {
    let prefix = u32::from(prefix.min(width));
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(width) - prefix;
    value.checked_shr(shift).unwrap_or(0) == net.checked_shr(shift).unwrap_or(0)
}

/// A network in CIDR form (`10.20.0.0/16`, `fd00::/8`; a bare address is one host), as
/// written in `[push] allowed_networks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

/// A network that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network such as 10.0.0.0/8 or fd00::/8")]
pub struct BadNetwork(pub String);

impl FromStr for Network {
    type Err = BadNetwork;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadNetwork(text.chars().take(64).collect());
        let trimmed = text.trim();
        let (address, prefix) = match trimmed.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (trimmed, None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) if p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if prefix > width {
            return Err(bad());
        }
        Ok(Self::new(address, prefix))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Network {
    /// The network of `prefix` bits at `address` (cut to the address's width). An
    /// IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is kept as the IPv4 network it is.
    pub fn new(address: IpAddr, prefix: u8) -> Self {
        match address {
            IpAddr::V4(_) => Self {
                address,
                prefix: prefix.min(32),
            },
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => Self {
                    address: IpAddr::V4(v4),
                    prefix: (prefix - 96).min(32),
                },
                _ => Self {
                    address,
                    prefix: prefix.min(128),
                },
            },
        }
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address is the IPv4 address
    /// it carries, so `127.0.0.0/8` holds `::ffff:127.0.0.1` too.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let v4 = |net: Ipv4Addr, ip: Ipv4Addr| {
            within(u32::from(ip).into(), u32::from(net).into(), self.prefix, 32)
        };
        let v6 =
            |net: Ipv6Addr, ip: Ipv6Addr| within(u128::from(ip), u128::from(net), self.prefix, 128);
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => v4(net, ip),
            (IpAddr::V4(net), IpAddr::V6(ip)) => ip.to_ipv4_mapped().is_some_and(|ip| v4(net, ip)),
            (IpAddr::V6(net), IpAddr::V6(ip)) => v6(net, ip),
            (IpAddr::V6(net), IpAddr::V4(ip)) => v6(net, ip.to_ipv6_mapped()),
        }
    }
}

/// Which addresses outgoing requests to outside addresses may reach: public ones, and
/// internal ones only inside the allowed networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<Network>,
}

impl AddressPolicy {
    /// Public addresses only, plus the `allowed` networks.
    pub fn new(allowed: Vec<Network>) -> Self {
        Self { allowed }
    }

    /// Reads the allowed networks as written in config, naming the first bad one.
    pub fn parse<S: AsRef<str>>(allowed: &[S]) -> Result<Self, BadNetwork> {
        allowed
            .iter()
            .map(|n| n.as_ref().parse())
            .collect::<Result<_, _>>()
            .map(Self::new)
    }

    /// Whether a request may go to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allowed.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn internal(text: &str) -> bool {
        is_internal(text.parse().unwrap())
    }

    #[test]
    fn every_internal_ipv4_range_is_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(internal(ip), "{ip} passed");
        }
    }

    #[test]
    fn public_ipv4_neighbours_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "142.250.180.10",
            "223.255.255.255",
        ] {
            assert!(!internal(ip), "{ip} refused");
        }
    }

    #[test]
    fn every_internal_ipv6_range_is_refused() {
        for ip in [
            "::",
            "::1",
            "::2",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
            "100::1",
            "64:ff9b:1::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
        ] {
            assert!(internal(ip), "{ip} passed");
        }
    }

    #[test]
    fn ipv6_forms_of_internal_ipv4_are_refused() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:100.64.0.1",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::10.1.2.3",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
        ] {
            assert!(internal(ip), "{ip} passed");
        }
        // The same forms of public addresses are public.
        for ip in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(!internal(ip), "{ip} refused");
        }
    }

    #[test]
    fn public_ipv6_passes() {
        for ip in [
            "2a00:1450:4009:81f::200a",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "fbff::1",
            "fe00::1",
        ] {
            assert!(!internal(ip), "{ip} refused");
        }
    }

    #[test]
    fn networks_parse_and_contain() {
        let net: Network = "127.0.0.0/8".parse().unwrap();
        assert!(net.contains("127.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!net.contains("128.0.0.1".parse().unwrap()));
        let host: Network = "10.1.2.3".parse().unwrap();
        assert!(host.contains("10.1.2.3".parse().unwrap()));
        assert!(!host.contains("10.1.2.4".parse().unwrap()));
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("10.0.0.1".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host/8",
            "10.0.0.0/-1",
            "1.2.3.4/ 8",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_policy_allows_only_listed_internal_networks() {
        let strict = AddressPolicy::default();
        assert!(!strict.permits("127.0.0.1".parse().unwrap()));
        assert!(strict.permits("8.8.8.8".parse().unwrap()));
        let loopback = AddressPolicy::parse(&["127.0.0.0/8"]).unwrap();
        assert!(loopback.permits("127.0.0.1".parse().unwrap()));
        assert!(loopback.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback.permits("10.0.0.1".parse().unwrap()));
        assert!(!loopback.permits("::1".parse().unwrap()));
        assert!(AddressPolicy::parse(&["nonsense"]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// An IPv4-mapped or -compatible address is judged as the IPv4 address it carries.
        #[test]
        fn mapped_forms_agree_with_ipv4(bits in any::<u32>()) {
            let v4 = Ipv4Addr::from(bits);
            prop_assert_eq!(is_internal(IpAddr::V6(v4.to_ipv6_mapped())), is_internal_v4(v4));
            if bits > 1 {
                prop_assert_eq!(is_internal(IpAddr::V6(v4.to_ipv6_compatible())), is_internal_v4(v4));
            }
        }

        /// Every address in a listed range is internal, whatever its host bits.
        #[test]
        fn ranges_hold_all_their_hosts(index in 0..INTERNAL_V4.len(), host in any::<u32>()) {
            let (net, prefix) = INTERNAL_V4[index];
            let mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            let ip = Ipv4Addr::from((u32::from_be_bytes(net) & !mask) | (host & mask));
            prop_assert!(is_internal(IpAddr::V4(ip)));
        }

        /// The classifier and the policy never panic, and a policy allowing everything
        /// permits every address.
        #[test]
        fn any_address_is_classified(bits in any::<u128>(), prefix in 0u8..=128) {
            let ip = IpAddr::V6(Ipv6Addr::from(bits));
            let _ = is_internal(ip);
            let everything = AddressPolicy::parse(&["::/0", "0.0.0.0/0"]).unwrap();
            prop_assert!(everything.permits(ip));
            let net = Network::new(ip, prefix);
            prop_assert!(net.contains(ip));
        }

        /// Reading a network from any short text never panics.
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,64}") {
            let _ = text.parse::<Network>();
        }
    }
}
