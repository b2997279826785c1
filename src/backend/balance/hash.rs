//! `hash-type` functions: the hash of a balancing key (`source`: the client
//! address, `uri`: the path, `hdr`: a header value), as HAProxy computes it.
//!
//! `sdbm`, `djb2`, `wt6` and `crc32` give 32-bit values (as `u64`, the high
//! half zero), bit-identical to HAProxy's `hash_sdbm`, `hash_djb2`,
//! `hash_wt6` and `hash_crc32`; `avalanche` passes them through HAProxy's
//! `full_hash` (Bob Jenkins' 32-bit integer hash times a large prime).
//! `xxh3` gives 64 bits (xxHash3, seed 0); its `avalanche` is a 64-bit
//! finalizer (splitmix64's).

use crate::config::{HashFunction, HashType};

/// The hash of `key` with the `hash-type` function and modifier.
pub fn hash_key(ht: &HashType, key: &[u8]) -> u64 {
    let h = match ht.function {
        HashFunction::Sdbm => sdbm(key),
        HashFunction::Djb2 => djb2(key),
        HashFunction::Wt6 => wt6(key),
        HashFunction::Crc32 => crc32fast::hash(key),
        HashFunction::Xxh3 => {
            let h = xxhash_rust::xxh3::xxh3_64(key);
            return if ht.avalanche { super::mix64(h) } else { h };
        }
    };
    u64::from(if ht.avalanche { full_hash(h) } else { h })
}

/// `balance source`: the hash of the client's address (4 bytes for IPv4
/// and IPv4-mapped IPv6, else 16), as HAProxy hashes it.
pub fn hash_addr(ht: &HashType, ip: std::net::IpAddr) -> u64 {
    hash_key(ht, &addr_bytes(ip))
}

/// The bytes of an address that `source` hashes.
pub(super) fn addr_bytes(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => v6.octets().to_vec(),
        },
    }
}

/// HAProxy's `hash_sdbm`.
pub fn sdbm(key: &[u8]) -> u32 {
    key.iter().fold(0u32, |h, &c| {
        u32::from(c)
            .wrapping_add(h << 6)
            .wrapping_add(h << 16)
            .wrapping_sub(h)
    })
}

/// HAProxy's `hash_djb2` (`h * 33 + c`, from 5381).
pub fn djb2(key: &[u8]) -> u32 {
    key.iter().fold(5381u32, |h, &c| {
        (h << 5).wrapping_add(h).wrapping_add(u32::from(c))
    })
}

/// HAProxy's `hash_wt6` (Willy Tarreau's, designed for consistent hashing).
pub fn wt6(key: &[u8]) -> u32 {
    let (mut h0, mut h1) = (0xa53c_965au32, 0x5ca6_953au32);
    let (mut step0, mut step1) = (6u32, 18u32);
    for &c in key {
        let t = u32::from(c);
        h0 = !(h0 ^ t);
        h1 = !(h1.wrapping_add(t));
        let t = h1.rotate_left(step0);
        h1 = h0.rotate_left(step1);
        h0 = t;
        let t = ((h0 >> 16) ^ h1) & 0xffff;
        step0 = t & 0x1f;
        step1 = t >> 11;
    }
    h0 ^ h1
}

/// HAProxy's `full_hash`: Bob Jenkins' 32-bit integer hash, then a
/// multiplication by a large prime close to 3/4 of the 32-bit space.
pub fn full_hash(mut a: u32) -> u32 {
    a = a.wrapping_add(0x7ed5_5d16).wrapping_add(a << 12);
    a = (a ^ 0xc761_c23c) ^ (a >> 19);
    a = a.wrapping_add(0x1656_67b1).wrapping_add(a << 5);
    a = a.wrapping_add(0xd3a2_646c) ^ (a << 9);
    a = a.wrapping_add(0xfd70_46c5).wrapping_add(a << 3);
    a = (a ^ 0xb55a_4f09) ^ (a >> 16);
    a.wrapping_mul(3_221_225_473)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashMethod;

    fn ht(function: HashFunction, avalanche: bool) -> HashType {
        HashType {
            method: HashMethod::MapBased,
            function,
            avalanche,
        }
    }

    #[test]
    fn known_values() {
        // Reference values computed with the C definitions (HAProxy's
        // src/hash.c), and the standard CRC-32 check value.
        assert_eq!(sdbm(b""), 0);
        assert_eq!(sdbm(b"a"), 97);
        assert_eq!(sdbm(b"ab"), 97 * 65599 + 98);
        assert_eq!(djb2(b""), 5381);
        assert_eq!(djb2(b"a"), 5381 * 33 + 97);
        assert_eq!(wt6(b""), 0xa53c_965a ^ 0x5ca6_953a);
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
        assert_eq!(
            hash_key(&ht(HashFunction::Crc32, false), b"123456789"),
            0xcbf4_3926
        );
        // Computed with a separate transcription of the C code.
        assert_eq!(full_hash(0), 0xab4e_d927);
        assert_eq!(full_hash(12345), 0xf652_3c53);
        let k = b"/pkg.Service/Method";
        assert_eq!(wt6(k), 0xf0c1_8338);
        assert_eq!(djb2(k), 0x0971_34a5);
        assert_eq!(sdbm(k), 0x7f5b_994c);
    }

    #[test]
    fn wt6_matches_the_c_code() {
        // A transcription of hash_wt6 with explicit shifts (rotation by 0
        // is the identity, as `x << 0 | x >> 32` is on the machines
        // HAProxy runs on).
        #[allow(clippy::manual_rotate)]
        fn c_wt6(key: &[u8]) -> u32 {
            let (mut h0, mut h1, mut s0, mut s1) = (0xa53c965au32, 0x5ca6953au32, 6u32, 18u32);
            let rot = |x: u32, s: u32| {
                if s == 0 {
                    x
                } else {
                    (x << s) | (x >> (32 - s))
                }
            };
            for &c in key {
                let t = c as u32;
                h0 = !(h0 ^ t);
                h1 = !(h1.wrapping_add(t));
                let t = rot(h1, s0);
                h1 = rot(h0, s1);
                h0 = t;
                let t = ((h0 >> 16) ^ h1) & 0xffff;
                s0 = t & 0x1f;
                s1 = t >> 11;
            }
            h0 ^ h1
        }
        for key in [&b""[..], b"a", b"/pkg.Service/Method", &[0xff; 100]] {
            assert_eq!(wt6(key), c_wt6(key));
        }
    }

    #[test]
    fn full_hash_step_by_step() {
        let a = 0u32;
        let a = a.wrapping_add(0x7ed55d16).wrapping_add(a << 12);
        assert_eq!(a, 0x7ed55d16);
        assert_eq!(
            u64::from(full_hash(sdbm(b"x"))),
            hash_key(&ht(HashFunction::Sdbm, true), b"x")
        );
    }

    #[test]
    fn functions_differ_and_32_bit_ones_stay_32_bit() {
        let key = b"/helloworld.Greeter/SayHello";
        let all = [
            HashFunction::Sdbm,
            HashFunction::Djb2,
            HashFunction::Wt6,
            HashFunction::Crc32,
            HashFunction::Xxh3,
        ];
        let mut seen = std::collections::HashSet::new();
        for f in all {
            for av in [false, true] {
                let h = hash_key(&ht(f, av), key);
                assert!(seen.insert(h), "{f:?} {av}");
                if f != HashFunction::Xxh3 {
                    assert!(h <= u64::from(u32::MAX));
                }
            }
        }
        assert_eq!(
            hash_key(&ht(HashFunction::Xxh3, false), key),
            xxhash_rust::xxh3::xxh3_64(key)
        );
    }

    #[test]
    fn addresses() {
        let t = HashType::default();
        let v4: std::net::IpAddr = "10.1.2.3".parse().expect("ip");
        let mapped: std::net::IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(hash_addr(&t, v4), hash_addr(&t, mapped));
        assert_eq!(hash_addr(&t, v4), u64::from(sdbm(&[10, 1, 2, 3])));
        assert_eq!(super::super::hash_ip(v4), super::super::hash_ip(mapped));
    }
}
