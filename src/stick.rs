//! Stick tables (`stick-table` in a backend), the per-request tracking of
//! `http-request track-sc0|1|2` and the per-connection tracking of
//! `tcp-request connection track-sc0|1|2`.
//!
//! What an entry stores is the table's `store` list ([`TableDef`], read by
//! [`Data`]): request, connection, error and `gpc0` counters and rates. A
//! counter tracked by a connection ([`Tracked`] with [`Count::Connection`])
//! holds one `conn_cur` of its entry until it is dropped, so every way a
//! connection ends gives it back; such an entry does not expire while held.
//! The connection's counters reach its requests through [`conns`] and
//! become their sc0..2 ([`ReqTrack::with_conn`]).
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
    /// `store conn_cnt`: connections tracked (`tcp-request connection track-sc*`).
    pub conn_cnt: bool,
    /// `store conn_cur`: tracked connections open now.
    pub conn_cur: bool,
    /// `store conn_rate(<period>)`.
    pub conn_rate: Option<Duration>,
    /// `store http_err_cnt`: requests that ended in an error (4xx, or one
    /// of the client-error gRPC statuses, see [`is_http_err`]).
    pub http_err_cnt: bool,
    /// `store http_err_rate(<period>)`.
    pub http_err_rate: Option<Duration>,
    /// `store gpc0`: general purpose counter 0 (`sc-inc-gpc0`).
    pub gpc0: bool,
    /// `store gpc0_rate(<period>)`.
    pub gpc0_rate: Option<Duration>,
}

impl TableDef {
    /// A table that stores nothing yet.
    pub fn new(key: KeyType, size: usize, expire: Duration) -> TableDef {
        TableDef {
            key,
            size,
            expire,
            http_req_rate: None,
            http_req_cnt: false,
            conn_cnt: false,
            conn_cur: false,
            conn_rate: None,
            http_err_cnt: false,
            http_err_rate: None,
            gpc0: false,
            gpc0_rate: None,
        }
    }

    /// What a call denied with 429 is told to wait: the rate period, or
    /// one second for a table without a rate.
    pub fn pushback(&self) -> Duration {
        self.http_req_rate
            .or(self.http_err_rate)
            .or(self.conn_rate)
            .or(self.gpc0_rate)
            .unwrap_or(Duration::from_secs(1))
    }

    /// Whether the table stores `data`.
    pub fn stores(&self, data: Data) -> bool {
        match data {
            Data::HttpReqRate => self.http_req_rate.is_some(),
            Data::HttpReqCnt => self.http_req_cnt,
            Data::ConnCnt => self.conn_cnt,
            Data::ConnCur => self.conn_cur,
            Data::ConnRate => self.conn_rate.is_some(),
            Data::HttpErrCnt => self.http_err_cnt,
            Data::HttpErrRate => self.http_err_rate.is_some(),
            Data::Gpc0 => self.gpc0,
            Data::Gpc0Rate => self.gpc0_rate.is_some(),
        }
    }

    /// The `store` list as written in the configuration
    /// (`http_req_rate(10s),conn_cur`), for the stats page.
    pub fn stored(&self) -> Vec<String> {
        let ms = format_period;
        let mut out = Vec::new();
        let mut flag = |on: bool, name: &str| {
            if on {
                out.push(name.to_string());
            }
        };
        flag(self.conn_cnt, "conn_cnt");
        flag(self.conn_cur, "conn_cur");
        flag(self.gpc0, "gpc0");
        flag(self.http_req_cnt, "http_req_cnt");
        flag(self.http_err_cnt, "http_err_cnt");
        let rates = [
            ("conn_rate", self.conn_rate),
            ("gpc0_rate", self.gpc0_rate),
            ("http_req_rate", self.http_req_rate),
            ("http_err_rate", self.http_err_rate),
        ];
        for (name, p) in rates {
            if let Some(p) = p {
                out.push(format!("{name}({})", ms(p)));
            }
        }
        out
    }
}

/// `10s`, `1m`, `1500ms`: a period as a configuration would write it.
pub fn format_period(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0".into(),
        _ if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// A data type a fetch or converter reads from an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    HttpReqRate,
    HttpReqCnt,
    ConnCnt,
    ConnCur,
    ConnRate,
    HttpErrCnt,
    HttpErrRate,
    Gpc0,
    Gpc0Rate,
}

impl Data {
    /// Every data type with its name (`store` lists, fetch suffixes).
    pub const ALL: [(&'static str, Data); 9] = [
        ("http_req_rate", Data::HttpReqRate),
        ("http_req_cnt", Data::HttpReqCnt),
        ("conn_cnt", Data::ConnCnt),
        ("conn_cur", Data::ConnCur),
        ("conn_rate", Data::ConnRate),
        ("http_err_cnt", Data::HttpErrCnt),
        ("http_err_rate", Data::HttpErrRate),
        ("gpc0", Data::Gpc0),
        ("gpc0_rate", Data::Gpc0Rate),
    ];

    pub fn of(name: &str) -> Option<Data> {
        Data::ALL.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
    }

    pub fn name(self) -> &'static str {
        Data::ALL
            .iter()
            .find(|(_, d)| *d == self)
            .map_or("", |(n, _)| n)
    }
}

/// Whether a response counts in `http_err_cnt` / `http_err_rate`: an HTTP
/// 4xx status, or (weir's gRPC extension) a final `grpc-status` that blames
/// the caller: INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
/// PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, OUT_OF_RANGE
/// or UNAUTHENTICATED.
pub fn is_http_err(status: u16, grpc_status: Option<u32>) -> bool {
    (400..500).contains(&status) || matches!(grpc_status, Some(3 | 5 | 6 | 7 | 8 | 9 | 11 | 16))
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
    conn_cnt: u64,
    conn_cur: u64,
    conn_rate: FreqCtr,
    err_cnt: u64,
    err_rate: FreqCtr,
    gpc0: u64,
    gpc0_rate: FreqCtr,
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
                conn_cnt: 0,
                conn_cur: 0,
                conn_rate: FreqCtr::new(now),
                err_cnt: 0,
                err_rate: FreqCtr::new(now),
                gpc0: 0,
                gpc0_rate: FreqCtr::new(now),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Shard = Mutex<HashMap<Key, Arc<Entry>>>;

/// What tracking an entry counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// `http-request track-sc*`: one request.
    Request,
    /// `tcp-request connection track-sc*`: one connection (`conn_cnt`,
    /// `conn_rate`, and `conn_cur` until the [`Tracked`] is dropped).
    Connection,
}

fn sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

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

    /// An entry expires after `expire` without being tracked, unless a
    /// connection still tracks it (`conn_cur`), as in HAProxy.
    fn expired(&self, e: &Entry, now: Instant) -> bool {
        let c = e.lock();
        c.conn_cur == 0 && now.saturating_duration_since(c.last) >= self.def.expire
    }

    /// Tracks `key`: finds or creates its entry and counts one request or
    /// one connection in it.
    pub fn track(&self, key: Key, now: Instant, what: Count) -> Arc<Entry> {
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
                    // The least recently used entry goes, one no connection
                    // tracks if there is one.
                    let oldest = shard
                        .iter()
                        .min_by_key(|(_, e)| {
                            let c = e.lock();
                            (c.conn_cur > 0, c.last)
                        })
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
        match what {
            Count::Request => self.count_req(&entry, now),
            Count::Connection => {
                let d = &self.def;
                let mut c = entry.lock();
                c.last = now;
                if d.conn_cnt {
                    c.conn_cnt = c.conn_cnt.saturating_add(1);
                }
                if d.conn_cur {
                    c.conn_cur = c.conn_cur.saturating_add(1);
                }
                if let Some(p) = d.conn_rate {
                    c.conn_rate.add(now, p, 1);
                }
            }
        }
        entry
    }

    /// Counts one request in `e` (`http_req_cnt`, `http_req_rate`).
    fn count_req(&self, e: &Entry, now: Instant) {
        let mut c = e.lock();
        c.last = now;
        if self.def.http_req_cnt {
            c.req_cnt = c.req_cnt.saturating_add(1);
        }
        if let Some(p) = self.def.http_req_rate {
            c.req_rate.add(now, p, 1);
        }
    }

    /// Counts one error response in `e` (`http_err_cnt`, `http_err_rate`).
    fn count_err(&self, e: &Entry, now: Instant) {
        if !self.def.http_err_cnt && self.def.http_err_rate.is_none() {
            return;
        }
        let mut c = e.lock();
        if self.def.http_err_cnt {
            c.err_cnt = c.err_cnt.saturating_add(1);
        }
        if let Some(p) = self.def.http_err_rate {
            c.err_rate.add(now, p, 1);
        }
    }

    /// `sc-inc-gpc0` / `sc_inc_gpc0`: adds one to `gpc0` and `gpc0_rate`;
    /// the new `gpc0` (else the new rate), `None` when neither is stored.
    fn inc_gpc0(&self, e: &Entry, now: Instant) -> Option<i64> {
        let d = &self.def;
        if !d.gpc0 && d.gpc0_rate.is_none() {
            return None;
        }
        let mut c = e.lock();
        if d.gpc0 {
            c.gpc0 = c.gpc0.saturating_add(1);
        }
        if let Some(p) = d.gpc0_rate {
            c.gpc0_rate.add(now, p, 1);
        }
        Some(match d.gpc0_rate {
            Some(p) if !d.gpc0 => sat(c.gpc0_rate.rate(now, p)),
            _ => sat(c.gpc0),
        })
    }

    /// `sc_clr_gpc0`: sets `gpc0` back to 0; its value before.
    fn clr_gpc0(&self, e: &Entry) -> Option<i64> {
        if !self.def.gpc0 {
            return None;
        }
        let mut c = e.lock();
        Some(sat(std::mem::take(&mut c.gpc0)))
    }

    /// The value of `data` in `e`; `None` when the table does not store it.
    pub fn read(&self, e: &Entry, data: Data, now: Instant) -> Option<i64> {
        let d = &self.def;
        let c = e.lock();
        let rate = |f: &FreqCtr, p: Option<Duration>| p.map(|p| sat(f.rate(now, p)));
        let cnt = |on: bool, v: u64| on.then(|| sat(v));
        match data {
            Data::HttpReqRate => rate(&c.req_rate, d.http_req_rate),
            Data::HttpReqCnt => cnt(d.http_req_cnt, c.req_cnt),
            Data::ConnCnt => cnt(d.conn_cnt, c.conn_cnt),
            Data::ConnCur => cnt(d.conn_cur, c.conn_cur),
            Data::ConnRate => rate(&c.conn_rate, d.conn_rate),
            Data::HttpErrCnt => cnt(d.http_err_cnt, c.err_cnt),
            Data::HttpErrRate => rate(&c.err_rate, d.http_err_rate),
            Data::Gpc0 => cnt(d.gpc0, c.gpc0),
            Data::Gpc0Rate => rate(&c.gpc0_rate, d.gpc0_rate),
        }
    }

    /// The entry of `key`, if there is a live one (read-only look-up).
    pub fn get(&self, key: &Key, now: Instant) -> Option<Arc<Entry>> {
        let shard = self.shard(key);
        shard.get(key).filter(|e| !self.expired(e, now)).cloned()
    }

    /// `<key>,table_<data>(<table>)`, `src_<data>([<table>])`: the value of
    /// `data` in the entry of `key`. HAProxy answers 0 for a key that is
    /// not in the table, and nothing when the table does not store `data`.
    pub fn lookup(&self, sample: &Sample, data: Data, now: Instant) -> Option<i64> {
        if !self.def.stores(data) {
            return None;
        }
        let key = Key::of(sample, self.def.key)?;
        match self.get(&key, now) {
            Some(e) => self.read(&e, data, now),
            None => Some(0),
        }
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

/// One tracked counter (`track-sc<n>`). A counter tracked by a connection
/// holds one `conn_cur` of its entry until it is dropped, whatever way the
/// connection ends.
#[derive(Debug)]
pub struct Tracked {
    pub table: Arc<Table>,
    pub key: Key,
    pub entry: Arc<Entry>,
    what: Count,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.what == Count::Connection && self.table.def.conn_cur {
            let mut c = self.entry.lock();
            c.conn_cur = c.conn_cur.saturating_sub(1);
            // The entry expires `expire` after its last connection left.
            c.last = c.last.max(Instant::now());
        }
    }
}

/// The counters a client connection tracked (`tcp-request connection
/// track-sc*`); its requests see them as their own sc0..2.
#[derive(Debug, Default)]
pub struct ConnTrack {
    sc: [Option<Arc<Tracked>>; 3],
}

impl ConnTrack {
    pub fn is_empty(&self) -> bool {
        self.sc.iter().all(Option::is_none)
    }
}

/// The stick-counter state of one request (or of one connection while its
/// `tcp-request connection` rules run): the tables it may use and the
/// entries tracked as sc0..2 (each at most once).
#[derive(Debug)]
pub struct ReqTrack {
    pub tables: Arc<Tables>,
    sc: [OnceLock<Arc<Tracked>>; 3],
    what: Count,
}

impl ReqTrack {
    /// A request's counters.
    pub fn new(tables: Arc<Tables>) -> ReqTrack {
        ReqTrack {
            tables,
            sc: Default::default(),
            what: Count::Request,
        }
    }

    /// The counters of a request on a connection that tracked some: they
    /// are the request's sc0..2 already (a later `http-request track-sc*`
    /// of the same number is a no-op) and count the request.
    pub fn with_conn(tables: Arc<Tables>, conn: &ConnTrack) -> ReqTrack {
        let t = ReqTrack::new(tables);
        let now = Instant::now();
        for (slot, c) in t.sc.iter().zip(&conn.sc) {
            if let Some(c) = c {
                c.table.count_req(&c.entry, now);
                let _ = slot.set(c.clone());
            }
        }
        t
    }

    /// What a connection tracked, read-only (nothing is counted): the
    /// `sc_*` fetches of a `mode tcp` connection's `use_backend` rules.
    pub fn view_conn(tables: Arc<Tables>, conn: &ConnTrack) -> ReqTrack {
        let t = ReqTrack::new(tables);
        for (slot, c) in t.sc.iter().zip(&conn.sc) {
            if let Some(c) = c {
                let _ = slot.set(c.clone());
            }
        }
        t
    }

    /// The counters of a connection, for its `tcp-request connection` rules.
    pub fn connection(tables: Arc<Tables>) -> ReqTrack {
        ReqTrack {
            tables,
            sc: Default::default(),
            what: Count::Connection,
        }
    }

    /// What the connection's rules tracked, for its requests.
    pub fn into_conn(self) -> ConnTrack {
        let [a, b, c] = self.sc;
        ConnTrack {
            sc: [a.into_inner(), b.into_inner(), c.into_inner()],
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
        let entry = t.track(key.clone(), Instant::now(), self.what);
        let tracked = Arc::new(Tracked {
            table: t.clone(),
            key,
            entry,
            what: self.what,
        });
        // Set at most once; a lost race drops (and so releases) ours.
        let _ = slot.set(tracked);
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

    /// `sc_<data>(<ctr>[,<table>])`: nothing when the counter is not
    /// tracked or the table does not store `data`.
    pub fn get(&self, ctr: usize, table: Option<&str>, data: Data) -> Option<i64> {
        let (t, e) = self.entry(ctr, table)?;
        t.read(&e, data, Instant::now())
    }

    pub fn http_req_rate(&self, ctr: usize, table: Option<&str>) -> Option<i64> {
        self.get(ctr, table, Data::HttpReqRate)
    }

    pub fn http_req_cnt(&self, ctr: usize, table: Option<&str>) -> Option<i64> {
        self.get(ctr, table, Data::HttpReqCnt)
    }

    /// `sc_inc_gpc0` / `sc-inc-gpc0`: the new value.
    pub fn inc_gpc0(&self, ctr: usize, table: Option<&str>) -> Option<i64> {
        let (t, e) = self.entry(ctr, table)?;
        t.inc_gpc0(&e, Instant::now())
    }

    /// `sc_clr_gpc0`: the value before.
    pub fn clr_gpc0(&self, ctr: usize, table: Option<&str>) -> Option<i64> {
        let (t, e) = self.entry(ctr, table)?;
        t.clr_gpc0(&e)
    }

    /// `<key>,table_<data>(<table>)`, `src_<data>(<table>)`.
    pub fn lookup(&self, table: &str, sample: &Sample, data: Data) -> Option<i64> {
        self.tables.get(table)?.lookup(sample, data, Instant::now())
    }

    /// The response of this request ended: counts an error
    /// (`http_err_cnt`, `http_err_rate`) in every tracked entry when it
    /// is one ([`is_http_err`]).
    pub fn response(&self, status: u16, grpc_status: Option<u32>) {
        if !is_http_err(status, grpc_status) {
            return;
        }
        let now = Instant::now();
        for t in self.sc.iter().filter_map(OnceLock::get) {
            t.table.count_err(&t.entry, now);
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
            http_req_rate: Some(Duration::from_secs(10)),
            http_req_cnt: true,
            ..TableDef::new(KeyType::String(32), size, Duration::from_secs(expire))
        }
    }

    fn all(expire: u64) -> TableDef {
        let p = Some(Duration::from_secs(10));
        TableDef {
            conn_cnt: true,
            conn_cur: true,
            conn_rate: p,
            http_err_cnt: true,
            http_err_rate: p,
            gpc0: true,
            gpc0_rate: p,
            ..def(100, expire)
        }
    }

    fn tracked(t: &Arc<Table>, key: Key, now: Instant, what: Count) -> Tracked {
        Tracked {
            table: t.clone(),
            entry: t.track(key.clone(), now, what),
            key,
            what,
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
            t.track(Key::Int(i), now, Count::Request);
            assert!(t.len() <= 10);
        }
        let e = t.track(Key::Int(1000), now, Count::Request);
        t.track(Key::Int(1000), now, Count::Request);
        assert_eq!(t.read(&e, Data::HttpReqCnt, now), Some(2));
        assert!(t.get(&Key::Int(1000), now).is_some());
        assert!(t
            .get(&Key::Int(1000), now + Duration::from_secs(2))
            .is_none());
        // Tracked again after expiry: counters start over.
        let later = now + Duration::from_secs(2);
        let e = t.track(Key::Int(1000), later, Count::Request);
        assert_eq!(t.read(&e, Data::HttpReqCnt, later), Some(1));
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

    #[test]
    fn connections_count_and_conn_cur_follows_the_tracked_counter() {
        let t = Arc::new(Table::new("t", all(1)));
        let now = Instant::now();
        let k = Key::Int(7);
        let a = tracked(&t, k.clone(), now, Count::Connection);
        let b = tracked(&t, k.clone(), now, Count::Connection);
        let read = |d, at| t.read(&a.entry, d, at);
        assert_eq!(read(Data::ConnCur, now), Some(2));
        assert_eq!(read(Data::ConnCnt, now), Some(2));
        assert_eq!(read(Data::ConnRate, now), Some(2));
        // Connections do not count as requests.
        assert_eq!(read(Data::HttpReqCnt, now), Some(0));
        drop(b);
        assert_eq!(read(Data::ConnCur, now), Some(1));
        // An entry a connection still tracks does not expire.
        let later = now + Duration::from_secs(5);
        assert!(t.get(&k, later).is_some());
        let entry = a.entry.clone();
        drop(a);
        assert_eq!(t.read(&entry, Data::ConnCur, later), Some(0));
        assert_eq!(t.read(&entry, Data::ConnCnt, later), Some(2));
        // Rate: a quarter of the previous period still counts after 12.5 s.
        assert_eq!(
            t.read(&entry, Data::ConnRate, now + Duration::from_millis(12_500)),
            Some(1)
        );
    }

    #[test]
    fn data_not_stored_reads_as_nothing() {
        let t = Table::new("t", def(10, 10));
        let now = Instant::now();
        let e = t.track(Key::Int(1), now, Count::Connection);
        for d in [
            Data::ConnCnt,
            Data::ConnCur,
            Data::ConnRate,
            Data::HttpErrCnt,
            Data::HttpErrRate,
            Data::Gpc0,
            Data::Gpc0Rate,
        ] {
            assert_eq!(t.read(&e, d, now), None, "{d:?}");
            assert_eq!(t.lookup(&Sample::Int(1), d, now), None, "{d:?}");
        }
        assert_eq!(t.inc_gpc0(&e, now), None);
        assert_eq!(t.clr_gpc0(&e), None);
        // Stored, key absent: 0.
        assert_eq!(t.lookup(&Sample::Int(2), Data::HttpReqCnt, now), Some(0));
    }

    #[test]
    fn errors_and_gpc0_count_on_tracked_entries() {
        let mut tables = Tables::new();
        tables.insert("t".into(), Arc::new(Table::new("t", all(10))));
        let tables = Arc::new(tables);
        let r = ReqTrack::new(tables.clone());
        r.track(0, "t", &Sample::Str("alice".into()));
        r.response(200, None);
        r.response(200, Some(0));
        r.response(200, Some(14)); // UNAVAILABLE: the server's fault
        r.response(500, None);
        assert_eq!(r.get(0, None, Data::HttpErrCnt), Some(0));
        r.response(404, None);
        r.response(200, Some(16)); // UNAUTHENTICATED
        r.response(200, Some(3)); // INVALID_ARGUMENT
        assert_eq!(r.get(0, None, Data::HttpErrCnt), Some(3));
        assert_eq!(r.get(0, Some("t"), Data::HttpErrRate), Some(3));
        assert_eq!(r.get(1, None, Data::HttpErrCnt), None);
        assert_eq!(r.inc_gpc0(0, None), Some(1));
        assert_eq!(r.inc_gpc0(0, None), Some(2));
        assert_eq!(r.get(0, None, Data::Gpc0Rate), Some(2));
        assert_eq!(r.clr_gpc0(0, None), Some(2));
        assert_eq!(r.get(0, None, Data::Gpc0), Some(0));
        let s = Sample::Str("alice".into());
        assert_eq!(r.lookup("t", &s, Data::HttpErrCnt), Some(3));
        assert_eq!(r.lookup("nope", &s, Data::HttpErrCnt), None);
    }

    #[test]
    fn a_connection_counter_is_the_request_counter_and_counts_requests() {
        let mut tables = Tables::new();
        tables.insert("t".into(), Arc::new(Table::new("t", all(10))));
        let tables = Arc::new(tables);
        let c = ReqTrack::connection(tables.clone());
        c.track(1, "t", &Sample::Int(5));
        let conn = c.into_conn();
        assert!(!conn.is_empty());
        let r = ReqTrack::with_conn(tables.clone(), &conn);
        // sc1 is taken: a request-level track-sc1 is a no-op.
        r.track(1, "t", &Sample::Int(6));
        assert_eq!(r.get(1, None, Data::HttpReqCnt), Some(1));
        assert_eq!(r.get(1, None, Data::ConnCur), Some(1));
        let r2 = ReqTrack::with_conn(tables.clone(), &conn);
        assert_eq!(r2.get(1, None, Data::HttpReqCnt), Some(2));
        let t = &tables["t"];
        assert!(t.get(&Key::Int(6), Instant::now()).is_none());
        drop((r, r2));
        assert_eq!(
            t.lookup(&Sample::Int(5), Data::ConnCur, Instant::now()),
            Some(1)
        );
        drop(conn);
        assert_eq!(
            t.lookup(&Sample::Int(5), Data::ConnCur, Instant::now()),
            Some(0)
        );
    }

    #[test]
    fn full_shard_evicts_an_entry_no_connection_tracks() {
        let t = Arc::new(Table::new(
            "t",
            TableDef {
                conn_cur: true,
                ..def(1, 100)
            },
        ));
        let now = Instant::now();
        let held = tracked(&t, Key::Int(1), now, Count::Connection);
        t.track(Key::Int(2), now + Duration::from_secs(1), Count::Request);
        // Size 1: the only entry is in use, so it goes anyway (bounded).
        assert_eq!(t.len(), 1);
        drop(held);
        // 16 shards of 2: three keys of one shard, the oldest in use.
        let t = Arc::new(Table::new(
            "t",
            TableDef {
                conn_cur: true,
                ..def(32, 100)
            },
        ));
        let shard = |k: i64| fnv(&Key::Int(k)) % 16;
        let same: Vec<i64> = (0..10_000)
            .filter(|k| shard(*k) == shard(0))
            .take(3)
            .collect();
        let held = tracked(&t, Key::Int(same[0]), now, Count::Connection);
        t.track(
            Key::Int(same[1]),
            now + Duration::from_secs(1),
            Count::Request,
        );
        t.track(
            Key::Int(same[2]),
            now + Duration::from_secs(2),
            Count::Request,
        );
        assert!(t.get(&Key::Int(same[0]), now).is_some());
        assert!(t.get(&Key::Int(same[1]), now).is_none());
        drop(held);
    }

    #[test]
    fn periods_print_like_the_configuration() {
        assert_eq!(format_period(Duration::from_secs(10)), "10s");
        assert_eq!(format_period(Duration::from_secs(120)), "2m");
        assert_eq!(format_period(Duration::from_millis(1500)), "1500ms");
        let d = TableDef {
            conn_cur: true,
            ..def(1, 1)
        };
        assert_eq!(
            d.stored(),
            ["conn_cur", "http_req_cnt", "http_req_rate(10s)"]
        );
    }
}
