//! Distinguished names, HAProxy style (`/C=FR/O=Example/CN=client1`), for
//! `ssl_c_s_dn` / `ssl_c_i_dn`.

use x509_parser::x509::X509Name;

/// OpenSSL short names for the usual attribute OIDs.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.46" => "dnQualifier",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => return None,
    })
}

/// Every attribute of every RDN, in order, as `/<name>=<value>`.
pub(crate) fn oneline(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for attr in name.iter_attributes() {
        let oid = attr.attr_type().to_id_string();
        out.push('/');
        out.push_str(short_name(&oid).unwrap_or(&oid));
        out.push('=');
        match attr.as_str() {
            Ok(s) => out.push_str(s),
            Err(_) => out.push_str(&String::from_utf8_lossy(attr.as_slice())),
        }
    }
    out
}

/// Subject and issuer DNs of a DER certificate (`None` if it does not parse).
pub(crate) fn subject_issuer(der: &[u8]) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some((oneline(cert.subject()), oneline(cert.issuer())))
}
