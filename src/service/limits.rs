//! Who a keyless client is, and how often it may ask.
//!
//! Behind a TLS proxy every client's TCP peer is the proxy, so the
//! per-address limits would put every applicant in one bucket. The court
//! names its proxies (`trusted_proxies`, addresses or CIDR blocks) and the
//! one header they write (`forwarded_header`: `X-Forwarded-For`, what nginx
//! and HAProxy append, or RFC 7239 `Forwarded`). From a trusted peer the
//! client is read from that header only, right to left, skipping the
//! trusted hops; the first untrusted address is the client. The other
//! header is never read: a proxy that appends to one passes the client's
//! own copy of the other through unchanged, so believing it would let a
//! client name itself. From any other peer both are ignored (anyone can
//! write them). An IPv6 client counts by its /64.
//!
//! Each purpose has its own bucket per client: looking a verification code
//! up, and entering an SMS code (an account or phone confirmation). Wrong
//! codes for one challenge target (an account, a phone, an approval step)
//! count on their own too, wherever they come from (many addresses cannot
//! share the work of guessing one): only wrong codes judged against a live
//! challenge count, so a stranger cannot spend the applicant's quota
//! without spending the tries of the court's challenges (five each, and
//! only the court sends a new one). A refusal says when to try again
//! (`Retry-After`).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use governor::clock::Clock as _;

use super::problem::ApiError;

/// The header the court's proxies write the client's address in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx
    /// `$proxy_add_x_forwarded_for`, HAProxy `option forwardfor`).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    /// `x-forwarded-for` or `forwarded` (any case).
    pub fn parse(name: &str) -> Result<Self, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(format!(
                "forwarded_header: {name:?} is neither \"x-forwarded-for\" nor \"forwarded\" (the one header the court's proxies write)"
            )),
        }
    }
}

/// Addresses or CIDR blocks whose forwarded header is believed, and which
/// header that is.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    blocks: Vec<(IpAddr, u8)>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// These proxies write the client in `header` (the other is ignored).
    pub fn reading(self, header: ForwardedHeader) -> Self {
        Self { header, ..self }
    }

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
        Ok(Self {
            blocks,
            header: ForwardedHeader::default(),
        })
    }

    /// Whether `ip` is one of the proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.blocks.iter().any(|(block, bits)| match (canonical(*block), ip) {
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
        let hops = forwarded_hops(headers, self.header);
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

/// The hops a request passed, client first, as `header` names them: the
/// `for=` of every `Forwarded` element, or every `X-Forwarded-For` address
/// (`None` for one that is not an address).
fn forwarded_hops(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    match header {
        ForwardedHeader::Forwarded => values("forwarded")
            .iter()
            .flat_map(|value| value.split(',').map(str::to_owned).collect::<Vec<_>>())
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| node_address(value.trim().trim_matches('"')))
            })
            .collect(),
        // Some proxies write a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
        ForwardedHeader::XForwardedFor => values("x-forwarded-for")
            .iter()
            .flat_map(|value| value.split(',').map(|hop| node_address(hop.trim())).collect::<Vec<_>>())
            .collect(),
    }
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
    /// When each recent wrong code for a target was judged, oldest first.
    wrong_codes: Mutex<HashMap<String, VecDeque<Instant>>>,
    wrong_codes_per_hour: u32,
}

const HOUR: Duration = Duration::from_secs(3600);

/// Quotas of the keyless endpoints (`serve` reads them from its config).
#[derive(Clone, Copy, Debug)]
pub struct Quotas {
    /// Verification-code look-ups per client a minute.
    pub lookups_per_minute: u32,
    /// SMS codes entered per client a minute.
    pub code_entries_per_minute: u32,
    /// Wrong SMS codes for one account, phone or approval step an hour,
    /// from anywhere.
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
            wrong_codes: Mutex::new(HashMap::new()),
            wrong_codes_per_hour: quotas.code_entries_per_target_per_hour.max(1),
        }
    }

    /// Whether a code for `target` may be judged: refused, with the time
    /// to wait, once the last hour holds the quota of wrong codes for it.
    pub fn target_open(&self, target: &str) -> Result<(), ApiError> {
        let mut wrong = self.wrong_codes.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let Some(times) = wrong.get_mut(target) else {
            return Ok(());
        };
        while times.front().is_some_and(|t| now.duration_since(*t) >= HOUR) {
            times.pop_front();
        }
        if times.len() < self.wrong_codes_per_hour as usize {
            return Ok(());
        }
        let wait = times
            .front()
            .map_or(HOUR, |oldest| HOUR.saturating_sub(now.duration_since(*oldest)));
        metrics::counter!("caseledger_rate_limited_total", "route" => "code_target").increment(1);
        Err(ApiError::rate_limited(wait))
    }

    /// Counts a wrong code judged for `target`.
    pub fn wrong_code(&self, target: &str) {
        let mut wrong = self.wrong_codes.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if wrong.len() > KEYS_MAX {
            wrong.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < HOUR));
        }
        let times = wrong.entry(target.to_owned()).or_default();
        times.push_back(now);
        while times.len() > self.wrong_codes_per_hour as usize {
            times.pop_front();
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

    /// Counts a request of `purpose` by `client`; refused with the time to
    /// wait.
    pub fn check(&self, purpose: Purpose, client: IpAddr, route: &'static str) -> Result<(), ApiError> {
        let limiter = match purpose {
            Purpose::Lookup => &self.lookups,
            Purpose::CodeEntry => &self.code_entries,
        };
        if limiter.len() > KEYS_MAX {
            limiter.retain_recent();
        }
        let refused = |wait: Duration| {
            metrics::counter!("caseledger_rate_limited_total", "route" => route).increment(1);
            ApiError::rate_limited(wait)
        };
        limiter
            .check_key(&guesser(client))
            .map_err(|until| refused(until.wait_time_from(limiter.clock().now())))
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
        let list = ["10.0.0.0/8".to_owned(), "::1".to_owned()];
        let proxies = TrustedProxies::parse(&list).expect("parse");
        let xff = headers(&[("x-forwarded-for", "203.0.113.7, 10.1.2.3")]);
        // From the proxy: the first untrusted hop from the right.
        assert_eq!(proxies.client(ip("10.9.9.9"), &xff), ip("203.0.113.7"));
        // A client that writes its own header before the proxy's append:
        // the proxy appended the real one, which is read first.
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.4")]);
        assert_eq!(proxies.client(ip("10.9.9.9"), &spoofed), ip("198.51.100.4"));
        // From anyone else: ignored.
        assert_eq!(proxies.client(ip("192.0.2.50"), &xff), ip("192.0.2.50"));
        // Addresses with ports.
        let ported = headers(&[("x-forwarded-for", "192.0.2.61:5555, [2001:db8::18]:443")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &ported), ip("2001:db8::18"));
        // A proxy that appends X-Forwarded-For passes the client's own
        // `Forwarded` through: it is not read.
        let client_written = headers(&[("forwarded", "for=198.51.100.200"), ("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &client_written), ip("203.0.113.9"));
        let only_forwarded = headers(&[("forwarded", "for=198.51.100.200")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &only_forwarded), ip("10.0.0.1"));
        // Proxies that write RFC 7239 `Forwarded` (with ports, quotes,
        // IPv6); then X-Forwarded-For is the one not read.
        let proxies = TrustedProxies::parse(&list)
            .expect("parse")
            .reading(ForwardedHeader::parse("Forwarded").expect("a header"));
        let forwarded = headers(&[
            ("forwarded", "for=\"[2001:db8::17]:4711\";proto=https, for=10.0.0.2"),
            ("x-forwarded-for", "192.0.2.99"),
        ]);
        assert_eq!(proxies.client(ip("::1"), &forwarded), ip("2001:db8::17"));
        assert_eq!(proxies.client(ip("10.0.0.1"), &xff), ip("10.0.0.1"));
        let with_port = headers(&[("forwarded", "for=192.0.2.60:5555")]);
        assert_eq!(proxies.client(ip("::ffff:10.0.0.1"), &with_port), ip("192.0.2.60"));
        // An unknown hop: the proxy that could not name it stands for it.
        let unknown = headers(&[("forwarded", "for=unknown, for=10.0.0.3")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &unknown), ip("10.0.0.3"));
        for bad in ["x-real-ip", "", "forwarded-for"] {
            assert!(ForwardedHeader::parse(bad).is_err(), "{bad}");
        }
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
        assert!(limits.check(Purpose::Lookup, client, "t").is_ok());
        assert!(limits.check(Purpose::Lookup, client, "t").is_ok());
        match limits.check(Purpose::Lookup, client, "t") {
            Err(ApiError::RateLimited { retry_after }) => {
                assert!(
                    retry_after > Duration::ZERO && retry_after <= Duration::from_secs(60),
                    "{retry_after:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Code entries are another bucket.
        assert!(limits.check(Purpose::CodeEntry, client, "t").is_ok());
        // Per target, only wrong codes count: two an hour, from anywhere.
        for _ in 0..5 {
            assert!(limits.target_open("account/a").is_ok(), "entries alone spend nothing");
        }
        limits.wrong_code("account/a");
        assert!(limits.target_open("account/a").is_ok());
        limits.wrong_code("account/a");
        assert!(matches!(
            limits.target_open("account/a"),
            Err(ApiError::RateLimited { retry_after })
                if retry_after > Duration::from_secs(60) && retry_after <= Duration::from_secs(3600)
        ));
        assert!(limits.target_open("account/b").is_ok());
    }
}
