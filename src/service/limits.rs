//! Who a keyless client is, and how often it may ask.
//!
//! Behind a TLS proxy every client's TCP peer is the proxy, so the
//! per-address limits would put every applicant in one bucket. The court
//! names its proxies (`trusted_proxies`, addresses or CIDR blocks): from a
//! trusted peer, the client is read from `Forwarded` (RFC 7239) or, without
//! it, `X-Forwarded-For`, right to left, skipping the trusted hops; the
//! first untrusted address is the client. From any other peer those headers
//! are ignored (anyone can write them). An IPv6 client counts by its /64.
//!
//! Each purpose has its own bucket per client: looking a verification code
//! up, and entering an SMS code (an account or phone confirmation); and the
//! codes entered for one account or phone count on their own too, wherever
//! they come from (many addresses cannot share the work of guessing one).
//! A refusal says when to try again (`Retry-After`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::Clock as _;

use super::problem::ApiError;

/// Addresses or CIDR blocks whose forwarded headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `192.0.2.1`, `10.0.0.0/8`, `::1`, `fd00::/8`.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut blocks = Vec::new();
        for text in list {
            let (address, bits) = match text.trim().split_once('/') {
                Some((address, bits)) => (address, Some(bits)),
                None => (text.trim(), None),
            };
            let address: IpAddr = address
                .parse()
                .map_err(|_| format!("trusted_proxies: {text:?} is not an IP address or CIDR block"))?;
            let width = if address.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => width,
                Some(bits) => bits
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= width)
                    .ok_or_else(|| format!("trusted_proxies: {text:?} has a bad prefix length"))?,
            };
            blocks.push((address, bits));
        }
        Ok(Self(blocks))
    }

    /// Whether `ip` is one of the proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|(block, bits)| match (canonical(*block), ip) {
            (IpAddr::V4(block), IpAddr::V4(ip)) => prefix_matches(&block.octets(), &ip.octets(), *bits),
            (IpAddr::V6(block), IpAddr::V6(ip)) => prefix_matches(&block.octets(), &ip.octets(), *bits),
            _ => false,
        })
    }

    /// The client of a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let hops = forwarded_hops(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                // An address its proxy could not name ("unknown", an
                // obfuscated name): the nearest proxy stands for it.
                None => break,
                Some(ip) => {
                    client = canonical(*ip);
                    if !self.contains(client) {
                        break;
                    }
                }
            }
        }
        client
    }
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`) is the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_matches(block: &[u8], ip: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    block[..whole] == ip[..whole]
        && (rest == 0 || {
            let mask = 0xffu8 << (8 - rest);
            block[whole] & mask == ip[whole] & mask
        })
}

/// The hops a request passed, client first: the `for=` of every
/// `Forwarded` element, or, without that header, every `X-Forwarded-For`
/// address (`None` for one that is not an address).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|value| value.split(',').map(str::to_owned).collect::<Vec<_>>())
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| node_address(value.trim().trim_matches('"')))
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .flat_map(|value| value.split(',').map(|hop| hop.trim().parse().ok()).collect::<Vec<_>>())
        .collect()
}

/// The address of an RFC 7239 node: `192.0.2.1`, `192.0.2.1:4711`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']').and_then(|(v6, _)| v6.parse().ok());
    }
    node.parse()
        .ok()
        .or_else(|| node.split_once(':').and_then(|(v4, _)| v4.parse().ok()))
}

/// Whom a guess is counted against: an IPv4 address, or an IPv6 /64 (one
/// subscriber holds a whole /64; counting single addresses would give it
/// 2^64 quotas).
pub fn guesser(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

/// What a keyless client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A verification code looked up (`GET /v1/verify/{code}`).
    Lookup,
    /// An SMS code entered to confirm an account or a phone.
    CodeEntry,
}

/// Keys a limiter remembers before it forgets those whose quota refilled.
const KEYS_MAX: usize = 10_000;

type Keyed<K> = governor::DefaultKeyedRateLimiter<K>;

/// The keyless endpoints' limits.
#[derive(Debug)]
pub struct Limits {
    pub proxies: TrustedProxies,
    lookups: Keyed<IpAddr>,
    code_entries: Keyed<IpAddr>,
    per_target: Keyed<String>,
}

/// Quotas of the keyless endpoints (`serve` reads them from its config).
#[derive(Clone, Copy, Debug)]
pub struct Quotas {
    /// Verification-code look-ups per client a minute.
    pub lookups_per_minute: u32,
    /// SMS codes entered per client a minute.
    pub code_entries_per_minute: u32,
    /// SMS codes entered for one account or phone an hour, from anywhere.
    pub code_entries_per_target_per_hour: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            lookups_per_minute: super::VERIFY_PER_IP_PER_MINUTE,
            code_entries_per_minute: 10,
            code_entries_per_target_per_hour: 20,
        }
    }
}

fn positive(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    pub fn new(proxies: TrustedProxies, quotas: Quotas) -> Self {
        Self {
            proxies,
            lookups: governor::RateLimiter::keyed(governor::Quota::per_minute(positive(quotas.lookups_per_minute))),
            code_entries: governor::RateLimiter::keyed(governor::Quota::per_minute(positive(
                quotas.code_entries_per_minute,
            ))),
            per_target: governor::RateLimiter::keyed(governor::Quota::per_hour(positive(
                quotas.code_entries_per_target_per_hour,
            ))),
        }
    }

    /// The client of a request (loopback when the router runs without a
    /// connection, as in tests).
    pub fn client(&self, extensions: &axum::http::Extensions, headers: &HeaderMap) -> IpAddr {
        let peer = extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        self.proxies.client(peer, headers)
    }

    /// Counts a request of `purpose` by `client` (and, for a code entry,
    /// against its `target`); refused with the time to wait.
    pub fn check(
        &self,
        purpose: Purpose,
        client: IpAddr,
        target: Option<&str>,
        route: &'static str,
    ) -> Result<(), ApiError> {
        let limiter = match purpose {
            Purpose::Lookup => &self.lookups,
            Purpose::CodeEntry => &self.code_entries,
        };
        if limiter.len() > KEYS_MAX {
            limiter.retain_recent();
        }
        if self.per_target.len() > KEYS_MAX {
            self.per_target.retain_recent();
        }
        let refused = |wait: Duration| {
            metrics::counter!("caseledger_rate_limited_total", "route" => route).increment(1);
            ApiError::rate_limited(wait)
        };
        limiter
            .check_key(&guesser(client))
            .map_err(|until| refused(until.wait_time_from(limiter.clock().now())))?;
        if let Some(target) = target {
            self.per_target
                .check_key(&target.to_owned())
                .map_err(|until| refused(until.wait_time_from(self.per_target.clock().now())))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn forwarded_headers_are_believed_from_trusted_proxies_only() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).expect("parse");
        let xff = headers(&[("x-forwarded-for", "203.0.113.7, 10.1.2.3")]);
        // From the proxy: the first untrusted hop from the right.
        assert_eq!(proxies.client(ip("10.9.9.9"), &xff), ip("203.0.113.7"));
        // A client that writes its own header before the proxy's append:
        // the proxy appended the real one, which is read first.
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.4")]);
        assert_eq!(proxies.client(ip("10.9.9.9"), &spoofed), ip("198.51.100.4"));
        // From anyone else: ignored.
        assert_eq!(proxies.client(ip("192.0.2.50"), &xff), ip("192.0.2.50"));
        // Forwarded is preferred, with ports, quotes and IPv6.
        let forwarded = headers(&[
            ("forwarded", "for=\"[2001:db8::17]:4711\";proto=https, for=10.0.0.2"),
            ("x-forwarded-for", "192.0.2.99"),
        ]);
        assert_eq!(proxies.client(ip("::1"), &forwarded), ip("2001:db8::17"));
        let with_port = headers(&[("forwarded", "for=192.0.2.60:5555")]);
        assert_eq!(proxies.client(ip("::ffff:10.0.0.1"), &with_port), ip("192.0.2.60"));
        // An unknown hop: the proxy that could not name it stands for it.
        let unknown = headers(&[("forwarded", "for=unknown, for=10.0.0.3")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &unknown), ip("10.0.0.3"));
        // No header: the proxy itself.
        assert_eq!(proxies.client(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        for bad in ["10.0.0.0/33", "proxy.example", "::1/129", "10.0.0.1/x"] {
            assert!(TrustedProxies::parse(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(TrustedProxies::parse(&["172.16.0.0/12".into()])
            .expect("parse")
            .contains(ip("172.31.255.1")));
        assert!(!TrustedProxies::parse(&["172.16.0.0/12".into()])
            .expect("parse")
            .contains(ip("172.32.0.1")));
    }

    #[test]
    fn an_ipv6_subscriber_is_one_guesser() {
        let a = ip("2001:db8:1:2::1");
        let b = ip("2001:db8:1:2:ffff::9");
        let other = ip("2001:db8:1:3::1");
        assert_eq!(guesser(a), guesser(b));
        assert_ne!(guesser(a), guesser(other));
        assert_eq!(guesser(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn purposes_and_targets_have_their_own_buckets_and_say_when_to_retry() {
        let limits = Limits::new(
            TrustedProxies::default(),
            Quotas {
                lookups_per_minute: 2,
                code_entries_per_minute: 3,
                code_entries_per_target_per_hour: 2,
            },
        );
        let client = ip("192.0.2.1");
        assert!(limits.check(Purpose::Lookup, client, None, "t").is_ok());
        assert!(limits.check(Purpose::Lookup, client, None, "t").is_ok());
        match limits.check(Purpose::Lookup, client, None, "t") {
            Err(ApiError::RateLimited { retry_after }) => {
                assert!(
                    retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60),
                    "{retry_after:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Code entries are another bucket; per target, two an hour.
        assert!(limits.check(Purpose::CodeEntry, client, Some("account/a"), "t").is_ok());
        assert!(limits
            .check(Purpose::CodeEntry, ip("192.0.2.2"), Some("account/a"), "t")
            .is_ok());
        assert!(matches!(
            limits.check(Purpose::CodeEntry, ip("192.0.2.3"), Some("account/a"), "t"),
            Err(ApiError::RateLimited { retry_after }) if retry_after > Duration::from_secs(60)
        ));
        assert!(limits.check(Purpose::CodeEntry, client, Some("account/b"), "t").is_ok());
    }
}
