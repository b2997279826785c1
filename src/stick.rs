//! Stick tables (`stick-table` in a backend) and the per-request tracking
//! of `http-request track-sc0|1|2`.
//!
//! A table is a bounded map from a key (IP address, integer or string) to
//! counters. It is split in up to 16 shards, each a `Mutex<HashMap>` with
//! its own share of `size` (`size / shards`, so the table never holds more
//! than `size` entries). An entry expires after `expire` without being
//! tracked; expired entries are reset when their key comes back, and swept
//! from a shard when a new key needs room in it (then the least recently
//! used entry goes if the shard is still full): memory is bounded by
//! `size` and the work per request by the shard's share.
//!
//! Request rates use HAProxy's `freq_ctr`: the counts of the current and
//! the previous period; the rate is the current count plus the previous
//! one weighted by the part of the period not elapsed yet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::acl::Sample;

/// `stick-table type ...`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    Ip,
    Ipv6,
    Integer,
    /// `string [len <n>]`: keys are cut to `len` bytes (default 32).
    String(usize),
}

/// What a `stick-table` line declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    pub key: KeyType,
    pub size: usize,
    pub expire: Duration,
    /// `store http_req_rate(<period>)`.
    pub http_req_rate: Option<Duration>,
    /// `store http_req_cnt`.
    pub http_req_cnt: bool,
}

impl TableDef {
    /// What a call denied with 429 is told to wait: the rate period, or
    /// one second for a table without a rate.
    pub fn pushback(&self) -> Duration {
        self.http_req_rate.unwrap_or(Duration::from_secs(1))
    }
}

/// HAProxy's `freq_ctr`: events in the current and the previous period.
#[derive(Clone, Copy, Debug)]
pub struct FreqCtr {
    start: Instant,
    curr: u64,
    prev: u64,
}

impl FreqCtr {
    pub fn new(now: Instant) -> FreqCtr {
        FreqCtr {
            start: now,
            curr: 0,
            prev: 0,
        }
    }

    /// Moves the window to the period `now` is in.
    fn rotate(&mut self, now: Instant, period: Duration) {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed < period || period.is_zero() {
            return;
        }
        let n = elapsed.as_nanos() / period.as_nanos();
        self.prev = if n == 1 { self.curr } else { 0 };
        self.curr = 0;
        let step = period.as_nanos().saturating_mul(n);
        self.start += Duration::from_nanos(u64::try_from(step).unwrap_or(u64::MAX));
    }

    pub fn add(&mut self, now: Instant, period: Duration, n: u64) {
        self.rotate(now, period);
        self.curr = self.curr.saturating_add(n);
    }

    /// Events per `period` over the sliding window ending at `now`.
    pub fn rate(&self, now: Instant, period: Duration) -> u64 {
        let mut c = *self;
        c.rotate(now, period);
        if period.is_zero() {
            return c.curr;
        }
        let elapsed = now.saturating_duration_since(c.start).min(period);
        let left = (period - elapsed).as_nanos();
        let weighted = u128::from(c.prev) * left / period.as_nanos();
        c.curr
            .saturating_add(u64::try_from(weighted).unwrap_or(u64::MAX))
    }
}

/// A table key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Ip(IpAddr),
    Int(i64),
    Str(String),
}

impl Key {
    /// The key of `s` for a table of type `ty`; `None` when it does not
    /// convert.
    pub fn of(s: &Sample, ty: KeyType) -> Option<Key> {
        match ty {
            KeyType::Ip | KeyType::Ipv6 => {
                let ip = match s {
                    Sample::Ip(ip) => *ip,
                    Sample::Str(t) => t.trim().parse().ok()?,
                    _ => return None,
                };
                Some(Key::Ip(match (ty, ip) {
                    (KeyType::Ipv6, IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
                    _ => ip.to_canonical(),
                }))
            }
            KeyType::Integer => Some(Key::Int(match s {
                Sample::Int(i) => *i,
                Sample::Bool(b) => i64::from(*b),
                Sample::Str(t) => t.trim().parse().ok()?,
                Sample::Ip(_) => return None,
            })),
            KeyType::String(len) => {
                let mut t = s.to_string();
                if t.len() > len {
                    let mut cut = len;
                    while !t.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    t.truncate(cut);
                }
                Some(Key::Str(t))
            }
        }
    }
}

#[derive(Debug)]
struct Counters {
    last: Instant,
    req_cnt: u64,
    req_rate: FreqCtr,
}

/// One table entry.
#[derive(Debug)]
pub struct Entry {
    counters: Mutex<Counters>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            counters: Mutex::new(Counters {
                last: now,
                req_cnt: 0,
                req_rate: FreqCtr::new(now),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Shard = Mutex<HashMap<Key, Arc<Entry>>>;

/// A stick table.
#[derive(Debug)]
pub struct Table {
    pub name: String,
    pub def: TableDef,
    shards: Vec<Shard>,
    /// Entries one shard may hold.
    per_shard: usize,
}

impl Table {
    pub fn new(name: &str, def: TableDef) -> Table {
        let n = def.size.clamp(1, 16);
        Table {
            name: name.to_string(),
            per_shard: (def.size / n).max(1),
            shards: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
            def,
        }
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Entry>>> {
        // A fixed hash: the shard of a key must not change.
        let i = fnv(key) % self.shards.len() as u64;
        self.shards[i as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Entries held now (expired ones not swept yet included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.lock().last) >= self.def.expire
    }

    /// Tracks `key` for one request: finds or creates its entry, counts
    /// the request (`http_req_cnt`, `http_req_rate`).
    pub fn track(&self, key: Key, now: Instant) -> Arc<Entry> {
        let mut shard = self.shard(&key);
        let entry = match shard.get(&key) {
            Some(e) if !self.expired(e, now) => e.clone(),
            Some(_) => {
                let e = Arc::new(Entry::new(now));
                shard.insert(key, e.clone());
                e
            }
            None => {
                if shard.len() >= self.per_shard {
                    shard.retain(|_, e| !self.expired(e, now));
                }
                if shard.len() >= self.per_shard {
                    let oldest = shard
                        .iter()
                        .min_by_key(|(_, e)| e.lock().last)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = oldest {
                        shard.remove(&k);
                    }
                }
                let e = Arc::new(Entry::new(now));
                shard.insert(key, e.clone());
                e
            }
        };
        drop(shard);
        {
            let mut c = entry.lock();
            c.last = now;
            if self.def.http_req_cnt {
                c.req_cnt = c.req_cnt.saturating_add(1);
            }
            if let Some(p) = self.def.http_req_rate {
                c.req_rate.add(now, p, 1);
            }
        }
        entry
    }

    /// The entry of `key`, if there is a live one (read-only look-up).
    pub fn get(&self, key: &Key, now: Instant) -> Option<Arc<Entry>> {
        let shard = self.shard(key);
        shard.get(key).filter(|e| !self.expired(e, now)).cloned()
    }

    /// `http_req_rate` of an entry; `None` when the table does not store it.
    pub fn http_req_rate(&self, e: &Entry, now: Instant) -> Option<i64> {
        let p = self.def.http_req_rate?;
        Some(i64::try_from(e.lock().req_rate.rate(now, p)).unwrap_or(i64::MAX))
    }

    /// `http_req_cnt` of an entry; `None` when the table does not store it.
    pub fn http_req_cnt(&self, e: &Entry) -> Option<i64> {
        self.def
            .http_req_cnt
            .then(|| i64::try_from(e.lock().req_cnt).unwrap_or(i64::MAX))
    }
}

fn fnv(key: &Key) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match key {
        Key::Ip(IpAddr::V4(v4)) => eat(&v4.octets()),
        Key::Ip(IpAddr::V6(v6)) => eat(&v6.octets()),
        Key::Int(i) => eat(&i.to_le_bytes()),
        Key::Str(s) => eat(s.as_bytes()),
    }
    h
}

/// Every table of a configuration, by backend name.
pub type Tables = HashMap<String, Arc<Table>>;

/// One tracked counter of a request (`track-sc<n>`).
#[derive(Debug)]
pub struct Tracked {
    pub table: Arc<Table>,
    pub key: Key,
    pub entry: Arc<Entry>,
}

/// The stick-counter state of one request: the tables it may use and
/// the entries its `track-sc0..2` rules tracked (each at most once).
#[derive(Debug)]
pub struct ReqTrack {
    pub tables: Arc<Tables>,
    pub sc: [OnceLock<Tracked>; 3],
}

impl ReqTrack {
    pub fn new(tables: Arc<Tables>) -> ReqTrack {
        ReqTrack {
            tables,
            sc: Default::default(),
        }
    }

    /// `track-sc<ctr> <key> table <table>`: a no-op when the counter is
    /// already tracked or the key does not convert.
    pub fn track(&self, ctr: usize, table: &str, sample: &Sample) {
        let Some(slot) = self.sc.get(ctr) else { return };
        if slot.get().is_some() {
            return;
        }
        let Some(t) = self.tables.get(table) else {
            return;
        };
        let Some(key) = Key::of(sample, t.def.key) else {
            return;
        };
        let entry = t.track(key.clone(), Instant::now());
        let _ = slot.set(Tracked {
            table: t.clone(),
            key,
            entry,
        });
    }

    /// The entry counter `ctr` tracks, looked up in `table` when one is
    /// named (HAProxy's `sc_*(<ctr>,<table>)`).
    fn entry(&self, ctr: usize, table: Option<&str>) -> Option<(Arc<Table>, Arc<Entry>)> {
        let t = self.sc.get(ctr)?.get()?;
        match table {
            Some(name) if name != t.table.name => {
                let other = self.tables.get(name)?;
                let e = other.get(&t.key, Instant::now())?;
                Some((other.clone(), e))
            }
            _ => Some((t.table.clone(), t.entry.clone())),
        }
    }

    pub fn http_req_rate(&self, ctr: usize, table: Option<&str>) -> Option<i64> {
        let (t, e) = self.entry(ctr, table)?;
        t.http_req_rate(&e, Instant::now())
    }

    pub fn http_req_cnt(&self, ctr: usize, table: Option<&str>) -> Option<i64> {
        let (t, e) = self.entry(ctr, table)?;
        t.http_req_cnt(&e)
    }

    /// `<key>,table_http_req_rate(<table>)` / `table_http_req_cnt`.
    pub fn lookup(&self, table: &str, sample: &Sample, cnt: bool) -> Option<i64> {
        let t = self.tables.get(table)?;
        let key = Key::of(sample, t.def.key)?;
        // HAProxy answers 0 for a key that is not in the table.
        let Some(e) = t.get(&key, Instant::now()) else {
            return Some(0);
        };
        if cnt {
            t.http_req_cnt(&e)
        } else {
            t.http_req_rate(&e, Instant::now())
        }
    }

    /// What a call denied with 429 is told to wait: the rate period of the
    /// first tracked table, else one second.
    pub fn pushback(&self) -> Duration {
        self.sc
            .iter()
            .find_map(|s| s.get())
            .map_or(Duration::from_secs(1), |t| t.table.def.pushback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(size: usize, expire: u64) -> TableDef {
        TableDef {
            key: KeyType::String(32),
            size,
            expire: Duration::from_secs(expire),
            http_req_rate: Some(Duration::from_secs(10)),
            http_req_cnt: true,
        }
    }

    #[test]
    fn rate_counts_events_in_the_current_period() {
        let t0 = Instant::now();
        let p = Duration::from_secs(10);
        let mut c = FreqCtr::new(t0);
        for _ in 0..100 {
            c.add(t0, p, 1);
        }
        assert_eq!(c.rate(t0, p), 100);
        assert_eq!(c.rate(t0 + Duration::from_secs(9), p), 100);
    }

    #[test]
    fn rate_weights_the_previous_period() {
        let t0 = Instant::now();
        let p = Duration::from_secs(10);
        let mut c = FreqCtr::new(t0);
        c.add(t0, p, 100);
        // A quarter into the next period: 75% of the previous one counts.
        assert_eq!(c.rate(t0 + Duration::from_millis(12_500), p), 75);
        c.add(t0 + Duration::from_millis(12_500), p, 10);
        assert_eq!(c.rate(t0 + Duration::from_millis(12_500), p), 85);
        // Two periods later, everything is forgotten.
        assert_eq!(c.rate(t0 + Duration::from_secs(30), p), 0);
    }

    #[test]
    fn table_is_bounded_and_entries_expire() {
        let t = Table::new("t", def(10, 1));
        let now = Instant::now();
        for i in 0..100 {
            t.track(Key::Int(i), now);
            assert!(t.len() <= 10);
        }
        let e = t.track(Key::Int(1000), now);
        t.track(Key::Int(1000), now);
        assert_eq!(t.http_req_cnt(&e), Some(2));
        assert!(t.get(&Key::Int(1000), now).is_some());
        assert!(t
            .get(&Key::Int(1000), now + Duration::from_secs(2))
            .is_none());
        // Tracked again after expiry: counters start over.
        let e = t.track(Key::Int(1000), now + Duration::from_secs(2));
        assert_eq!(t.http_req_cnt(&e), Some(1));
    }

    #[test]
    fn string_keys_are_cut_to_len() {
        let s = Sample::Str("abcdef".into());
        assert_eq!(
            Key::of(&s, KeyType::String(3)),
            Some(Key::Str("abc".into()))
        );
        assert_eq!(Key::of(&s, KeyType::Integer), None);
        let ip = Sample::Ip("10.0.0.1".parse().unwrap());
        assert!(matches!(
            Key::of(&ip, KeyType::Ipv6),
            Some(Key::Ip(IpAddr::V6(_)))
        ));
    }
}
